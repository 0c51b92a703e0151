#!/usr/bin/env node
/*
 * Datafix Hub sandbox: a landlord's works-order ERP (« Patrimoine et travaux »), served by
 * node-soap (`soap.listen`), the second SOAP peer of the tests and the sandbox. The first peer
 * (connectors/sandbox/soap_erp.py) is Python/lxml; this one is a different SOAP stack on
 * purpose, shaped like an ERP the hub was never tuned to: French names, document/literal
 * wrapped with nested complex types, a server-side page cap, idempotent on its own business
 * key (the works-order number), a read by reference, no idempotency element, faults for
 * unknown elements. travaux.wsdl documents the operations and the faults.
 *
 *   node server.js [--port 8714] [--cap 100] [--lie-about-total N] [--refuse-all]
 *                  [--ecritures 2600] [--bons 300] [--seed 20240101] [--exit-with-stdin]
 *
 * Listens on 127.0.0.1 only (`--port 0`: a port the system picks) and prints one line on
 * stdout once it serves: `datafix-erp-travaux listening on http://127.0.0.1:<port>/travaux`.
 * `--exit-with-stdin`: stop when stdin closes (the Python launcher's pipe: the peer never
 * outlives the process that started it, even one killed with -9).
 *
 * Routes:
 *   POST /travaux             the SOAP endpoint (GET /travaux?wsdl: the WSDL)
 *   GET  /wsdl                the WSDL, its soap:address pointing at this server
 *   GET  /_peer/stats         {writes, writesByBon, statuts, calls, callsTotal, engagements, mode}
 *   POST /_peer/reset         forget the engagements and the counters; mode back to the flags
 *   GET  /_peer/mode          the behaviour switches
 *   POST /_peer/mode          change them: JSON {"cap": 100, "lieAboutTotal": 0, "refuseAll": false}
 * The /_peer routes are test controls: they are not in the WSDL.
 */
'use strict';

const fs = require('fs');
const http = require('http');
const path = require('path');
const soap = require('soap');

const HOST = '127.0.0.1';
const SOAP_PATH = '/travaux';
const NAMESPACE = 'urn:patrimoine-travaux';
const WSDL_ADDRESS = 'http://127.0.0.1:8714/travaux'; // the soap:address written in the file
const WSDL_TEMPLATE = fs.readFileSync(path.join(__dirname, 'travaux.wsdl'), 'utf8');

// --- Command line ----------------------------------------------------------------------------

function parseArguments(argv) {
  const options = {
    port: 8714,
    cap: 100,
    lieAboutTotal: 0,
    refuseAll: false,
    ecritures: 2600,
    bons: 300,
    seed: 20240101,
    months: 0,
    exitWithStdin: false,
  };
  const integers = {
    '--port': 'port',
    '--cap': 'cap',
    '--lie-about-total': 'lieAboutTotal',
    '--ecritures': 'ecritures',
    '--bons': 'bons',
    '--seed': 'seed',
  };
  for (let i = 0; i < argv.length; i += 1) {
    const name = argv[i];
    if (name === '--refuse-all') {
      options.refuseAll = true;
    } else if (name === '--exit-with-stdin') {
      options.exitWithStdin = true;
    } else if (name === '--months') {
      // the demo calendar's shift, in whole months (negative: earlier); see demo_calendar.py
      const text = argv[i + 1];
      i += 1;
      if (text === undefined || !/^-?\d+$/.test(text)) {
        usage(`--months attend un entier, pas ${JSON.stringify(text)}`);
      }
      options.months = Number(text);
    } else if (name in integers) {
      const text = argv[i + 1];
      i += 1;
      if (text === undefined || !/^\d+$/.test(text)) {
        usage(`${name} attend un entier positif ou nul, pas ${JSON.stringify(text)}`);
      }
      options[integers[name]] = Number(text);
    } else {
      usage(`option inconnue : ${name}`);
    }
  }
  if (options.port > 65535) usage(`--port ${options.port} n'est pas un port`);
  if (options.cap < 1) usage('--cap doit valoir au moins 1');
  return options;
}

function usage(message) {
  process.stderr.write(
    `server.js: ${message}\nusage: node server.js [--port N] [--cap N] [--lie-about-total N]` +
      ' [--refuse-all] [--ecritures N] [--bons N] [--seed N] [--exit-with-stdin]\n',
  );
  process.exit(2);
}

// --- Seed data (deterministic: a seeded PRNG) -------------------------------------------------

function mulberry32(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const NOMS = [
  'Martin', 'Bernard', 'Thomas', 'Petit', 'Robert', 'Richard', 'Durand', 'Dubois', 'Moreau',
  'Laurent', 'Simon', 'Michel', 'Lefèvre', 'Leroy', 'Roux', 'David', 'Bertrand', 'Morel',
  'Fournier', 'Girard', 'Bonnet', 'Dupont', 'Lambert', 'Fontaine', 'Rousseau', 'Vincent',
  "N'Diaye", 'Müller', 'Garçon', 'Nguyen',
];
const CODES = ['LOYER', 'CHARGES', 'REGUL', 'APL', 'PAIEMENT', 'DEPOT'];
const OBJETS = [
  'Remplacement chaudière', 'Réfection peinture cage B', 'Fuite colonne EU', 'Porte palière',
  'Interphone hors service', 'VMC bruyante', 'Volet roulant bloqué', 'Carrelage salle de bain',
];
const ETATS = ['OUVERT', 'EN_COURS', 'TERMINE', 'ANNULE'];
const PRESTATIONS = [
  'Main d’œuvre', 'Déplacement', 'Fourniture robinet', 'Peinture (m²)', 'Joint silicone',
  'Chaudière gaz condensation', 'Moteur volet', 'Diagnostic',
];

const pad = (number, width) => String(number).padStart(width, '0');
const isoDate = (ms) => new Date(ms).toISOString().slice(0, 10);
const isoDateTime = (ms) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
const cents = (value) => (value / 100).toFixed(2);

// `ms` moved by whole months, its day of the month clamped to the target month (31/05 + 1 →
// 30/06), the time of day kept: the demo calendar of connectors/sandbox/demo_calendar.py.
function addMonths(ms, months) {
  if (!months) return ms;
  const day = new Date(ms);
  const year = day.getUTCFullYear();
  const month = day.getUTCMonth() + months;
  const last = new Date(Date.UTC(year, month + 1, 0)).getUTCDate();
  return Date.UTC(year, month, Math.min(day.getUTCDate(), last)) + (ms % 86400000);
}

function seedData(options) {
  const random = mulberry32(options.seed);
  const pick = (list) => list[Math.floor(random() * list.length)];
  const between = (low, high) => low + Math.floor(random() * (high - low + 1));
  const start = Date.UTC(2024, 0, 1);
  const day = 86400000;
  const locataires = [];
  for (let i = 1; i <= 400; i += 1) {
    locataires.push({ reference: `LOC-${pad(i, 5)}`, nom: pick(NOMS) });
  }
  const ecritures = [];
  for (let i = 1; i <= options.ecritures; i += 1) {
    const date = start + between(0, 540) * day;
    const code = pick(CODES);
    const sign = code === 'PAIEMENT' || code === 'APL' ? -1 : 1;
    ecritures.push({
      numeroEcriture: `EC-${pad(i, 6)}`,
      locataire: { ...pick(locataires) },
      dateEcriture: isoDate(addMonths(date, options.months)),
      code,
      montant: { valeur: cents(sign * between(1500, 98000)), devise: 'EUR' },
      modifieLe: isoDateTime(addMonths(date + between(0, 30 * day), options.months)),
    });
  }
  const bons = [];
  for (let i = 1; i <= options.bons; i += 1) {
    const date = start + between(0, 540) * day;
    const lignes = [];
    for (let n = 1; n <= between(1, 4); n += 1) {
      lignes.push({
        numeroLigne: n,
        libelle: pick(PRESTATIONS),
        quantite: String(between(1, 12)),
        prixUnitaire: cents(between(500, 250000)),
      });
    }
    bons.push({
      numeroBon: `BT-${pad(i, 6)}`,
      locataire: { ...pick(locataires) },
      objet: pick(OBJETS),
      etat: pick(ETATS),
      dateCreation: isoDate(addMonths(date, options.months)),
      lignes: { ligne: lignes },
      modifieLe: isoDateTime(addMonths(date + between(0, 60 * day), options.months)),
    });
  }
  return { ecritures, bons };
}

// --- The request schema, as travaux.wsdl declares it (for validation) -----------------------
// Each complex type: [element, type, minOccurs, maxOccurs] in sequence order; a type that is
// not a key of TYPES is a simple type checked by SIMPLE.

const ONE = [1, 1];
const OPTIONAL = [0, 1];
const MANY = [0, Infinity];
const TYPES = {
  Page: [['numero', 'int', ...ONE], ['taille', 'int', ...ONE]],
  Montant: [['valeur', 'decimal', ...ONE], ['devise', 'devise', ...ONE]],
  Fournisseur: [['siret', 'siret', ...ONE], ['nom', 'texte', ...ONE]],
  LigneEngagement: [
    ['libelle', 'texte', ...ONE],
    ['quantite', 'decimal', ...ONE],
    ['prixUnitaire', 'decimal', ...ONE],
  ],
  LignesEngagement: [['ligne', 'LigneEngagement', ...MANY]],
  Engagement: [
    ['numeroBon', 'texte', ...ONE],
    ['fournisseur', 'Fournisseur', ...ONE],
    ['dateEngagement', 'date', ...ONE],
    ['montant', 'Montant', ...ONE],
    ['lignes', 'LignesEngagement', ...OPTIONAL],
  ],
  ListerEcritures: [['page', 'Page', ...ONE], ['modifieDepuis', 'dateTime', ...OPTIONAL]],
  ListerBonsDeTravaux: [['page', 'Page', ...ONE], ['modifieDepuis', 'dateTime', ...OPTIONAL]],
  EnregistrerEngagement: [['engagement', 'Engagement', ...ONE]],
  LireEngagement: [['numeroBon', 'texte', ...ONE]],
};

const SIMPLE = {
  int: [/^[+-]?\d+$/, 'un entier'],
  decimal: [/^[+-]?(\d+(\.\d*)?|\.\d+)$/, 'un nombre décimal (point décimal)'],
  date: [/^\d{4}-\d{2}-\d{2}$/, 'une date AAAA-MM-JJ'],
  dateTime: [/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?$/, 'une date et heure ISO 8601'],
  siret: [/^\d{14}$/, 'un SIRET de 14 chiffres'],
  devise: [/^[A-Z]{3}$/, 'un code de devise ISO 4217 (EUR)'],
  texte: [/\S/, 'un texte non vide'],
};

function fault(code, message) {
  return { Fault: { faultcode: `soap:${code}`, faultstring: message, statusCode: 500 } };
}

/** The parsed element (node-soap's object) checked against TYPES[type]: unknown elements,
 * missing or repeated ones, simple values. Returns a plain copy holding only declared
 * elements, repeated ones as arrays. Throws a SOAP fault. */
function validate(value, type, where) {
  const declared = TYPES[type];
  if (value === '' || value === null || value === undefined) value = {};
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw fault('Client.ValeurInvalide', `« ${where} » doit contenir des éléments, pas du texte`);
  }
  const names = new Set(declared.map(([name]) => name));
  for (const key of Object.keys(value)) {
    if (key === 'attributes' || key === '$attributes' || key === '$value') continue;
    if (!names.has(key)) {
      throw fault(
        'Client.ElementInconnu',
        `Élément inconnu « ${key} » dans « ${where} » : le schéma ${NAMESPACE} ne le déclare` +
          ` pas (éléments admis : ${[...names].join(', ')})`,
      );
    }
  }
  const copy = {};
  for (const [name, child, min, max] of declared) {
    const here = `${where}.${name}`;
    let items = value[name];
    items = items === undefined ? [] : Array.isArray(items) ? items : [items];
    if (items.length < min) {
      throw fault('Client.ElementManquant', `Élément obligatoire manquant : « ${here} »`);
    }
    if (items.length > max) {
      throw fault('Client.ValeurInvalide', `« ${here} » ne peut figurer qu'une fois`);
    }
    const checked = items.map((item) =>
      child in TYPES ? validate(item, child, here) : simple(item, child, here),
    );
    if (max === Infinity) copy[name] = checked;
    else if (checked.length) copy[name] = checked[0];
  }
  return copy;
}

function simple(value, type, where) {
  if (value !== null && typeof value === 'object') {
    const keys = Object.keys(value).filter((key) => key !== 'attributes' && key !== '$attributes');
    if (keys.length) {
      throw fault(
        'Client.ElementInconnu',
        `Élément inconnu « ${keys[0]} » dans « ${where} » : « ${where} » est une valeur simple`,
      );
    }
    value = '';
  }
  const text = String(value ?? '').trim();
  const [pattern, expected] = SIMPLE[type];
  if (!pattern.test(text) || (type.startsWith('date') && Number.isNaN(Date.parse(text)))) {
    throw fault(
      'Client.ValeurInvalide',
      `Valeur invalide pour « ${where} » : ${JSON.stringify(text)} (attendu : ${expected})`,
    );
  }
  return text;
}

/** "0012.50" → "12.5": the same amount compares equal, whatever the client's formatting. */
function canonicalDecimal(text) {
  let [, sign, whole, fraction] = /^([+-]?)(\d*)(?:\.(\d*))?$/.exec(text);
  whole = whole.replace(/^0+/, '') || '0';
  fraction = (fraction || '').replace(/0+$/, '');
  const number = fraction ? `${whole}.${fraction}` : whole;
  return number === '0' || sign !== '-' ? number : `-${number}`;
}

function canonicalEngagement(engagement) {
  return {
    numeroBon: engagement.numeroBon,
    fournisseur: { siret: engagement.fournisseur.siret, nom: engagement.fournisseur.nom },
    dateEngagement: engagement.dateEngagement,
    montant: {
      valeur: canonicalDecimal(engagement.montant.valeur),
      devise: engagement.montant.devise,
    },
    lignes: {
      ligne: ((engagement.lignes || {}).ligne || []).map((ligne) => ({
        libelle: ligne.libelle,
        quantite: canonicalDecimal(ligne.quantite),
        prixUnitaire: canonicalDecimal(ligne.prixUnitaire),
      })),
    },
  };
}

// --- The peer's state --------------------------------------------------------------------------

class Peer {
  constructor(options) {
    this.options = options;
    this.data = seedData(options);
    this.reset();
  }

  reset() {
    this.mode = {
      cap: this.options.cap,
      lieAboutTotal: this.options.lieAboutTotal,
      refuseAll: this.options.refuseAll,
    };
    this.engagements = new Map(); // numeroBon → {engagement, reference, version, enregistreLe}
    this.sequence = 0;
    this.writes = 0;
    this.writesByBon = {};
    this.statuts = { CREE: 0, MIS_A_JOUR: 0, INCHANGE: 0 };
    this.calls = {};
  }

  setMode(changes) {
    const next = { ...this.mode };
    for (const [key, value] of Object.entries(changes || {})) {
      if (key === 'cap' && Number.isInteger(value) && value >= 1) next.cap = value;
      else if (key === 'lieAboutTotal' && (Number.isInteger(value) || typeof value === 'boolean')) {
        next.lieAboutTotal = value === true ? 1 : Number(value);
      } else if (key === 'refuseAll' && typeof value === 'boolean') next.refuseAll = value;
      else throw new Error(`unknown mode or wrong value: ${key}=${JSON.stringify(value)}`);
    }
    this.mode = next;
    return this.mode;
  }

  stats() {
    const callsTotal = Object.values(this.calls).reduce((sum, count) => sum + count, 0);
    return {
      writes: this.writes,
      writesByBon: this.writesByBon,
      statuts: this.statuts,
      calls: this.calls,
      callsTotal,
      engagements: this.engagements.size,
      ecritures: this.data.ecritures.length,
      bons: this.data.bons.length,
      mode: this.mode,
    };
  }

  count(operation) {
    this.calls[operation] = (this.calls[operation] || 0) + 1;
  }

  page(args, where, records) {
    const request = validate(args, where, where);
    const numero = Number(request.page.numero);
    const taille = Number(request.page.taille);
    if (numero < 1) {
      throw fault('Client.ValeurInvalide', `« ${where}.page.numero » commence à 1 (reçu ${numero})`);
    }
    if (taille < 1) {
      throw fault('Client.ValeurInvalide', `« ${where}.page.taille » doit valoir au moins 1`);
    }
    let matching = records;
    if (request.modifieDepuis !== undefined) {
      const since = Date.parse(request.modifieDepuis);
      matching = records.filter((record) => Date.parse(record.modifieLe) >= since);
    }
    const size = Math.min(taille, this.mode.cap); // the server's cap, said nowhere
    const first = (numero - 1) * size;
    return {
      items: matching.slice(first, first + size),
      total: matching.length + this.mode.lieAboutTotal,
      pageNumero: numero,
    };
  }

  listerEcritures(args) {
    this.count('ListerEcritures');
    const { items, total, pageNumero } = this.page(args, 'ListerEcritures', this.data.ecritures);
    return { ecritures: { ecriture: items }, total, pageNumero };
  }

  listerBonsDeTravaux(args) {
    this.count('ListerBonsDeTravaux');
    const { items, total, pageNumero } = this.page(args, 'ListerBonsDeTravaux', this.data.bons);
    return { bons: { bon: items }, total, pageNumero };
  }

  enregistrerEngagement(args) {
    this.count('EnregistrerEngagement');
    const { engagement } = validate(args, 'EnregistrerEngagement', 'EnregistrerEngagement');
    if (this.mode.refuseAll) {
      throw fault(
        'Server.Refuse',
        `Engagement ${engagement.numeroBon} refusé : l'ERP n'accepte aucune écriture pour le moment`,
      );
    }
    const content = canonicalEngagement(engagement);
    const held = this.engagements.get(content.numeroBon);
    if (held && JSON.stringify(held.engagement) === JSON.stringify(content)) {
      this.statuts.INCHANGE += 1;
      return this.resultat(held.reference, 'INCHANGE', 'Engagement déjà enregistré, identique');
    }
    const now = isoDateTime(Date.now());
    const reference = held ? held.reference : `ENG-${pad((this.sequence += 1), 6)}`;
    this.engagements.set(content.numeroBon, {
      engagement: content,
      reference,
      version: held ? held.version + 1 : 1,
      enregistreLe: now,
    });
    this.writes += 1;
    this.writesByBon[content.numeroBon] = (this.writesByBon[content.numeroBon] || 0) + 1;
    const statut = held ? 'MIS_A_JOUR' : 'CREE';
    this.statuts[statut] += 1;
    return this.resultat(
      reference,
      statut,
      held ? 'Engagement mis à jour' : 'Engagement créé',
    );
  }

  resultat(reference, statut, message) {
    return { resultat: { reference, statut, message } };
  }

  lireEngagement(args) {
    this.count('LireEngagement');
    const { numeroBon } = validate(args, 'LireEngagement', 'LireEngagement');
    const held = this.engagements.get(numeroBon);
    if (!held) {
      throw fault('Client.Introuvable', `Aucun engagement pour le bon de travaux ${numeroBon}`);
    }
    const { engagement } = held;
    return {
      engagement: engagement.lignes.ligne.length
        ? engagement
        : { ...engagement, lignes: undefined },
      reference: held.reference,
      version: held.version,
      enregistreLe: held.enregistreLe,
    };
  }
}

// --- HTTP: the side routes, then node-soap on /travaux -----------------------------------------

function sendJson(response, status, body) {
  const text = JSON.stringify(body);
  response.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
  });
  response.end(text);
}

function readJson(request, callback) {
  const chunks = [];
  request.on('data', (chunk) => chunks.push(chunk));
  request.on('end', () => {
    const text = Buffer.concat(chunks).toString('utf8').trim();
    try {
      callback(null, text ? JSON.parse(text) : {});
    } catch (error) {
      callback(error);
    }
  });
}

function sideRoutes(peer, wsdlText) {
  return (request, response) => {
    const { pathname } = new URL(request.url, `http://${HOST}`);
    const route = `${request.method} ${pathname}`;
    if (route === 'GET /wsdl') {
      response.writeHead(200, { 'Content-Type': 'text/xml; charset=utf-8' });
      response.end(wsdlText());
    } else if (route === 'GET /_peer/stats') {
      sendJson(response, 200, peer.stats());
    } else if (route === 'POST /_peer/reset') {
      peer.reset();
      sendJson(response, 200, peer.stats());
    } else if (route === 'GET /_peer/mode') {
      sendJson(response, 200, peer.mode);
    } else if (route === 'POST /_peer/mode') {
      readJson(request, (error, body) => {
        if (error) return sendJson(response, 400, { error: `not JSON: ${error.message}` });
        try {
          return sendJson(response, 200, peer.setMode(body));
        } catch (problem) {
          return sendJson(response, 400, { error: problem.message });
        }
      });
    } else {
      sendJson(response, 404, { error: `no route ${route}` });
    }
  };
}

function main() {
  const options = parseArguments(process.argv.slice(2));
  const peer = new Peer(options);
  let wsdl = WSDL_TEMPLATE;
  const server = http.createServer(sideRoutes(peer, () => wsdl));
  server.on('error', (error) => {
    process.stderr.write(`datafix-erp-travaux: ${error.code || ''} ${error.message}\n`);
    process.exit(error.code === 'EADDRINUSE' ? 98 : 1);
  });
  server.listen(options.port, HOST, () => {
    const { port } = server.address();
    const base = `http://${HOST}:${port}`;
    wsdl = WSDL_TEMPLATE.replace(WSDL_ADDRESS, `${base}${SOAP_PATH}`);
    const service = {
      PatrimoineTravaux: {
        PatrimoineTravauxPort: {
          ListerEcritures: (args) => peer.listerEcritures(args),
          ListerBonsDeTravaux: (args) => peer.listerBonsDeTravaux(args),
          EnregistrerEngagement: (args) => peer.enregistrerEngagement(args),
          LireEngagement: (args) => peer.lireEngagement(args),
        },
      },
    };
    const text = (value) => value; // every simple value reaches the service as its text
    soap.listen(server, {
      path: SOAP_PATH,
      services: service,
      xml: wsdl,
      suppressStack: true,
      customDeserializer: { int: text, decimal: text, date: text, dateTime: text },
      callback: (error) => {
        if (error) {
          process.stderr.write(`datafix-erp-travaux: WSDL refused: ${error.message}\n`);
          process.exit(1);
        }
        process.stdout.write(`datafix-erp-travaux listening on ${base}${SOAP_PATH}\n`);
      },
    });
  });
  const stop = () => server.close(() => process.exit(0)) && server.closeAllConnections();
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  if (options.exitWithStdin) {
    process.stdin.on('end', stop);
    process.stdin.on('close', stop);
    process.stdin.resume();
  }
}

main();

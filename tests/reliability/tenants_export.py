"""The tenants export the reliability tests feed the hub, as the datafix maps it.

The export's columns: `N° locataire;Nom;Prénom;Date d'entrée;Statut`, and `Nb pers.` where a
test's file has it. `TENANT_FIELDS` is the `fields:` block of `entities.tenants` (indented for
it), written once for every test that maps this export.
"""

from __future__ import annotations

TENANT_FIELDS = """    fields:
      tenant_ref: "N° locataire"
      full_name: {concat: ["Nom", "Prénom"]}
      move_in_date: {from: "Date d'entrée", formats: [dd/mm/yyyy]}
      status:
        from: Statut
        map: {ACT: active, SOR: left, PRE: leaving}
"""
# the export's household size, for the files that have the column
HOUSEHOLD_SIZE = '      household_size: {from: "Nb pers.", default: 1}\n'

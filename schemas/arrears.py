"""Arrears prevention: the tenant facts a profile rule may test, the datafix's `arrears:` section
(profiles, scenarios, alerts) and the default profiles and scenarios of French social housing.

A profile rule is a set of tests on the facts below, all of which must hold; the rules are tried
in order and the first that holds places the tenant (`pipelines.lib.arrears` compiles them into
one SQL CASE). A blank fact (no income band known, no plan) never passes a test, so a rule
testing it does not place the tenant. The last default profile (`up_to_date`) tests nothing:
every tenant gets exactly one profile.

A scenario is the list of actions a profile calls for while the tenant owes (balance > 0):
each step is created once, on the first morning the tenant is in the profile, due `after_days`
later, over the tenant's preferred channel (or the step's), and closed when the balance clears.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from schemas.canonical import PAYMENT_METHODS, SEPA_REJECT_REASONS, TENANTS
from schemas.config import StrictModel, did_you_mean
from schemas.tables import PLAN_STATUSES

__all__ = [
    "DEFAULT_PROFILES",
    "DEFAULT_SCENARIOS",
    "FACTS",
    "ArrearsAlerts",
    "ArrearsSection",
    "Fact",
    "FactKind",
    "ProfileRule",
    "ScenarioStep",
]


class FactKind(StrEnum):
    """How a fact is tested: a number against bounds, a code against a list, a yes/no, or a
    number of days (tested in SQL as a date against the day computed)."""

    NUMBER = "number"
    DAYS = "days"
    CHOICE = "choice"
    BOOLEAN = "boolean"
    REASON = "reason"


@dataclass(frozen=True)
class Fact:
    """One thing a profile rule may test about a tenant."""

    name: str
    kind: FactKind
    description: str
    choices: tuple[str, ...] = ()


def _tenant_choices(column: str) -> tuple[str, ...]:
    return TENANTS.column(column).choices


_BUCKETS = ("debt_0_30_cents", "debt_31_60_cents", "debt_61_90_cents", "debt_91_180_cents",
            "debt_over_180_cents")  # fmt: skip

FACTS: dict[str, Fact] = {
    fact.name: fact
    for fact in (
        Fact("balance_cents", FactKind.NUMBER, "Balance in cents (> 0: the tenant owes)."),
        *(
            Fact(name, FactKind.NUMBER, f"Debt aged {name[5:-6].replace('_', '–')} days, cents.")
            for name in _BUCKETS
        ),
        Fact("overdue_cents", FactKind.NUMBER, "Debt older than 30 days, cents."),
        Fact("months_owed", FactKind.NUMBER, "Whole months of rent owed."),
        Fact("rejects_90d", FactKind.NUMBER, "Rejected direct debits in the last 90 days."),
        Fact("rejects_365d", FactKind.NUMBER, "Rejected direct debits in the last 365 days."),
        Fact("plan_missed", FactKind.NUMBER, "Repayment-plan instalments due and unpaid."),
        Fact("housing_aid_90d_cents", FactKind.NUMBER, "Housing aid received, last 90 days."),
        Fact("debt_days_90d", FactKind.NUMBER, "Days in debt among the last 90 (history)."),
        Fact("household_size", FactKind.NUMBER, "People in the household."),
        Fact("formal_demands", FactKind.NUMBER, "Earlier formal demands to pay."),
        Fact("tenancy_days", FactKind.DAYS, "Days since move-in."),
        Fact("debt_age_days", FactKind.DAYS, "Days since the oldest unpaid debit fell due."),
        Fact("days_since_payment", FactKind.DAYS, "Days since the last payment (never: blank)."),
        Fact("lease_status", FactKind.CHOICE, "Lease status.", _tenant_choices("status")),
        Fact("income_band", FactKind.CHOICE, "Income band.", _tenant_choices("income_band")),
        Fact("age_band", FactKind.CHOICE, "Age band.", _tenant_choices("age_band")),
        Fact(
            "housing_aid",
            FactKind.CHOICE,
            "Housing aid paid to the landlord.",
            _tenant_choices("housing_aid"),
        ),
        Fact("payment_method", FactKind.CHOICE, "The tenant's payment method.", PAYMENT_METHODS),
        Fact(
            "preferred_channel",
            FactKind.CHOICE,
            "Preferred channel.",
            _tenant_choices("preferred_channel"),
        ),
        Fact(
            "plan_status",
            FactKind.CHOICE,
            "Repayment plan status (`none`: no plan).",
            (*PLAN_STATUSES, "none"),
        ),
        Fact("fsl_aid", FactKind.BOOLEAN, "The household receives FSL aid."),
        Fact(
            "reject_reason",
            FactKind.REASON,
            "A SEPA reason among the 90 days' rejections.",
            SEPA_REJECT_REASONS,
        ),
    )
}


class ProfileRule(StrictModel):
    """One profile rule: the tenant is placed in `profile` when every test of `when` holds.

    Tests: a number or days fact takes `{at_least: N}`, `{at_most: N}` or both; a code fact
    takes one code or a list of codes; `fsl_aid` takes true or false; `reject_reason` one code
    or a list (any of the 90 days' reasons)."""

    profile: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$", description="The profile's name.")
    description: str = Field("", description="What the profile means, for the people acting.")
    when: dict[str, Any] = Field(
        default_factory=dict, description="Fact → test; empty: every tenant matches."
    )

    @field_validator("when")
    @classmethod
    def _tests_are_known(cls, when: dict[str, Any]) -> dict[str, Any]:
        for name, test in when.items():
            fact = FACTS.get(name)
            if fact is None:
                raise ValueError(
                    f"`{name}` is not a tenant fact a profile can test:"
                    f" {did_you_mean(name, tuple(FACTS))}"
                )
            when[name] = _checked_test(fact, test)
        return when

    def rule_text(self) -> str:
        """The rule as the reference page and `tenant_arrears.profile_rule` show it."""
        if not self.when:
            return "always"
        parts = []
        for name, test in self.when.items():
            if isinstance(test, dict):
                bounds = [f"{name} >= {test['at_least']}"] if "at_least" in test else []
                bounds += [f"{name} <= {test['at_most']}"] if "at_most" in test else []
                parts.append(" and ".join(bounds))
            elif isinstance(test, list) and len(test) > 1:
                parts.append(f"{name} in ({', '.join(str(v) for v in test)})")
            elif isinstance(test, list):
                parts.append(f"{name} = {test[0]}")
            else:
                parts.append(f"{name} = {str(test).lower() if isinstance(test, bool) else test}")
        return " and ".join(parts)


def _checked_test(fact: Fact, test: Any) -> Any:
    """The test of one fact, normalised (one code → a list of one), or a clear ValueError."""
    if fact.kind in (FactKind.NUMBER, FactKind.DAYS):
        if not isinstance(test, dict) or not test or set(test) - {"at_least", "at_most"}:
            raise ValueError(f"`{fact.name}` takes {{at_least: N}} and/or {{at_most: N}}")
        for bound, value in test.items():
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"`{fact.name}.{bound}` must be a whole number, not `{value}`")
        return dict(test)
    if fact.kind is FactKind.BOOLEAN:
        if not isinstance(test, bool):
            raise ValueError(f"`{fact.name}` takes true or false, not `{test}`")
        return test
    codes = test if isinstance(test, list) else [test]
    for code in codes:
        if code not in fact.choices:
            raise ValueError(
                f"`{code}` is not a value of `{fact.name}` (allowed: {', '.join(fact.choices)})"
            )
    return [str(code) for code in codes]


ACTIONS = ("reminder", "sms", "email", "call", "letter", "formal_notice", "social_referral",
           "caf_report", "mandate_request", "departure_notice", "visit")  # fmt: skip
CHANNELS = ("sms", "email", "letter", "phone", "visit")


class ScenarioStep(StrictModel):
    """One action of a profile's scenario."""

    step: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$", description="The step's name.")
    action: Literal[ACTIONS] = Field(description="What is done.")  # type: ignore[valid-type]
    channel: Literal["preferred", *CHANNELS] = Field(  # type: ignore[valid-type]
        "preferred", description="`preferred`: the tenant's preferred channel, else `fallback`."
    )
    fallback: Literal["sms", "email", "letter"] = Field(
        "letter", description="The channel when the tenant has no preferred channel."
    )
    after_days: int = Field(0, ge=0, le=365, description="Due this many days after it opens.")
    template: str = Field(description="The template (letter, SMS or script) the sink uses.")


class ArrearsAlerts(StrictModel):
    """Alert thresholds, each as a Dagster asset check: `warn` at or above the first, `error`
    at or above the second."""

    debt_warn_cents: int = Field(
        150_000, ge=1, description="A tenant whose balance crossed this since the day before: warn."
    )
    debt_error_cents: int = Field(
        500_000, ge=1, description="A tenant whose balance crossed this: error."
    )
    broken_plans_warn: int = Field(
        1, ge=1, description="Plans broken in the last 7 days: warn at this many."
    )
    broken_plans_error: int = Field(5, ge=1, description="… and error at this many.")

    @model_validator(mode="after")
    def _error_above_warn(self) -> ArrearsAlerts:
        if self.debt_error_cents < self.debt_warn_cents:
            raise ValueError("debt_error_cents must be at least debt_warn_cents")
        if self.broken_plans_error < self.broken_plans_warn:
            raise ValueError("broken_plans_error must be at least broken_plans_warn")
        return self


class ArrearsSection(StrictModel):
    """The datafix's `arrears:` section: profiles, scenarios and alert thresholds."""

    profiles: list[ProfileRule] = Field(
        default_factory=list,
        description="Profile rules, tried in order before the defaults (first match wins); a"
        " rule naming a default profile replaces that default in place.",
    )
    default_profiles: Literal["extend", "replace"] = Field(
        "extend",
        description="`extend`: the default profiles follow the datafix's; `replace`: only the"
        " datafix's (a tenant no rule places gets `unprofiled`).",
    )
    scenarios: dict[str, list[ScenarioStep]] = Field(
        default_factory=dict,
        description="Profile → its steps, replacing the default scenario of that profile"
        " (`[]`: no action).",
    )
    plan_broken_after: int = Field(
        2, ge=1, le=12, description="Missed instalments that break a repayment plan."
    )
    alerts: ArrearsAlerts = Field(default_factory=ArrearsAlerts)

    @model_validator(mode="after")
    def _scenarios_name_profiles(self) -> ArrearsSection:
        known = tuple(rule.profile for rule in self.rules())
        for profile in self.scenarios:
            if profile not in known:
                raise ValueError(
                    f"scenario `{profile}` names no profile: {did_you_mean(profile, known)}"
                )
        return self

    def rules(self) -> list[ProfileRule]:
        """The rules in the order they are tried."""
        if self.default_profiles == "replace":
            return list(self.profiles)
        own = {rule.profile: rule for rule in self.profiles}
        replaced = [own.pop(rule.profile, rule) for rule in DEFAULT_PROFILES]
        return [rule for rule in self.profiles if rule.profile in own] + replaced

    def scenario_steps(self) -> dict[str, list[ScenarioStep]]:
        """Profile → steps: the defaults overridden by the datafix's scenarios."""
        steps = {**DEFAULT_SCENARIOS, **self.scenarios}
        return {profile: list(items) for profile, items in steps.items() if items}


def _rule(profile: str, description: str, **when: Any) -> ProfileRule:
    return ProfileRule(profile=profile, description=description, when=when)


OWES = {"at_least": 1}
_AID = ["apl", "al"]

# Ordered: the first rule that holds places the tenant. Departures and plans first (they
# decide the procedure), then the legal stage and heavy debt, SEPA rejections by reason, aid,
# vulnerability, new tenants, the age of the debt, and the tenants who owe nothing last.
DEFAULT_PROFILES: tuple[ProfileRule, ...] = (
    _rule("departed_with_debt", "Left with a debt: final statement and recovery.",
          lease_status="left", balance_cents=OWES),
    _rule("departed_in_credit", "Left in credit: the balance is to be refunded.",
          lease_status="left", balance_cents={"at_most": -1}),
    _rule("departed_settled", "Left, account settled.", lease_status="left"),
    _rule("leaving_with_debt", "Notice given, owes: settle before the exit inspection.",
          lease_status="leaving", balance_cents=OWES),
    _rule("leaving_settled", "Notice given, nothing owed.", lease_status="leaving"),
    _rule("plan_broken", "Repayment plan broken: formal notice, then litigation.",
          plan_status="broken", balance_cents=OWES),
    _rule("plan_late", "A plan instalment is late: reminder before the plan breaks.",
          plan_status="late"),
    _rule("plan_on_track", "Repayment plan kept: follow it.", plan_status="on_track",
          balance_cents=OWES),
    _rule("legal_stage", "Already served a formal demand (commandement de payer) and owes.",
          formal_demands={"at_least": 1}, balance_cents=OWES),
    _rule("caf_report_due", "Two months owed with housing aid: report to the CAF (maintien"
          " de l'aide) and propose a plan.", months_owed={"at_least": 2}, housing_aid=_AID),
    _rule("heavy_debt", "Three months or more owed, no aid: formal notice and social"
          " assessment.", months_owed={"at_least": 3}),
    _rule("two_months_owed", "Two months owed: call and propose a repayment plan.",
          months_owed={"at_least": 2}),
    _rule("sepa_account_closed", "Direct debit rejected: account closed or wrong (AC01,"
          " AC04, AC06): new bank details needed.", reject_reason=["AC01", "AC04", "AC06"],
          balance_cents=OWES),
    _rule("sepa_mandate_missing", "Direct debit rejected for the mandate (MD01, MD02):"
          " a new mandate.", reject_reason=["MD01", "MD02"], balance_cents=OWES),
    _rule("sepa_refused", "Direct debit refused or refund asked by the tenant (MS02, MD06):"
          " call.", reject_reason=["MS02", "MD06"], balance_cents=OWES),
    _rule("sepa_deceased", "Direct debit rejected, holder deceased (MD07): succession.",
          reject_reason="MD07"),
    _rule("sepa_repeated_rejects", "Two rejected debits or more in 90 days: call and review"
          " the payment method.", rejects_90d={"at_least": 2}, balance_cents=OWES),
    _rule("sepa_insufficient_funds", "Direct debit rejected for insufficient funds (AM04):"
          " SMS then call.", reject_reason="AM04", balance_cents=OWES),
    _rule("sepa_rejected_other", "A direct debit rejected for another reason.",
          rejects_90d={"at_least": 1}, balance_cents=OWES),
    _rule("aid_stopped", "Aid expected but none received for 90 days, and owes: check the"
          " CAF file.", housing_aid=_AID, housing_aid_90d_cents={"at_most": 0},
          balance_cents=OWES),
    _rule("chronic_late_with_aid", "In debt most of the last 90 days despite housing aid.",
          debt_days_90d={"at_least": 45}, housing_aid=_AID, balance_cents=OWES),
    _rule("chronic_late_payer", "In debt most of the last 90 days.",
          debt_days_90d={"at_least": 45}, balance_cents=OWES),
    _rule("fsl_household_in_debt", "FSL household in debt: the FSL referent.", fsl_aid=True,
          balance_cents=OWES),
    _rule("senior_in_debt", "Lease holder 60 or over in debt: social worker.",
          age_band="60_plus", balance_cents=OWES),
    _rule("large_low_income_family", "Household of 5 or more, low income, in debt.",
          household_size={"at_least": 5}, income_band=["very_low", "low"], balance_cents=OWES),
    _rule("very_low_income_in_debt", "Very low income household in debt: social worker.",
          income_band="very_low", balance_cents=OWES),
    _rule("young_tenant_in_debt", "Lease holder under 30 in debt: budget advice.",
          age_band="under_30", balance_cents=OWES),
    _rule("new_tenant_in_debt", "Moved in less than 180 days ago and owes: a first incident"
          " to settle early.", tenancy_days={"at_most": 180}, balance_cents=OWES),
    _rule("no_payment_60_days", "No payment for 60 days and owes.",
          days_since_payment={"at_least": 60}, balance_cents=OWES),
    _rule("debt_over_90_days", "Debt older than 90 days.", debt_age_days={"at_least": 91},
          balance_cents=OWES),
    _rule("debt_61_90_days", "Debt 61 to 90 days old.", debt_age_days={"at_least": 61},
          balance_cents=OWES),
    _rule("debt_31_60_days", "Debt 31 to 60 days old.", debt_age_days={"at_least": 31},
          balance_cents=OWES),
    _rule("small_balance", "Owes 20 € or less (a residue).",
          balance_cents={"at_least": 1, "at_most": 2_000}),
    _rule("first_incident", "A recent debt, never in debt nor rejected before.",
          debt_days_90d={"at_most": 5}, rejects_365d={"at_most": 0}, balance_cents=OWES),
    _rule("recent_debt_cheque_or_cash", "A recent debt, pays by cheque or cash.",
          payment_method=["cheque", "cash"], balance_cents=OWES),
    _rule("recent_debt_transfer", "A recent debt, pays by transfer.",
          payment_method="transfer", balance_cents=OWES),
    _rule("recent_debt", "A recent debt.", balance_cents=OWES),
    _rule("in_credit", "In credit.", balance_cents={"at_most": -1}),
    _rule("new_tenant", "Moved in less than 90 days ago, nothing owed.",
          tenancy_days={"at_most": 90}),
    _rule("up_to_date_direct_debit", "Nothing owed, pays by direct debit.",
          payment_method="sepa_debit"),
    _rule("up_to_date", "Nothing owed."),
)  # fmt: skip


def _step(step: str, action: str, template: str, **settings: Any) -> ScenarioStep:
    return ScenarioStep(step=step, action=action, template=template, **settings)


_REMINDER = _step("reminder", "reminder", "relance_amiable")
_CALL = _step("call", "call", "script_appel_impaye", channel="phone", after_days=7)
DEFAULT_SCENARIOS: dict[str, list[ScenarioStep]] = {
    "departed_with_debt": [
        _step("departure_notice", "departure_notice", "decompte_sortie", channel="letter"),
        _step("formal_notice", "formal_notice", "mise_en_demeure_sortant", channel="letter",
              after_days=30),
    ],
    "leaving_with_debt": [_step("departure_notice", "departure_notice", "avis_solde_depart")],
    "plan_broken": [
        _step("formal_notice", "formal_notice", "mise_en_demeure_plan", channel="letter"),
        _step("social_referral", "social_referral", "signalement_ccapex", channel="letter",
              after_days=15),
    ],
    "plan_late": [_step("reminder", "reminder", "rappel_echeance_plan")],
    "legal_stage": [_step("call", "call", "script_contentieux", channel="phone")],
    "caf_report_due": [
        _step("caf_report", "caf_report", "signalement_impaye_caf", channel="letter"),
        _step("call", "call", "proposition_plan", channel="phone", after_days=3),
    ],
    "heavy_debt": [
        _step("formal_notice", "formal_notice", "mise_en_demeure", channel="letter"),
        _step("social_referral", "social_referral", "orientation_travailleur_social",
              channel="letter", after_days=15),
    ],
    "two_months_owed": [_step("call", "call", "proposition_plan", channel="phone"), _REMINDER],
    "sepa_account_closed": [_step("mandate_request", "mandate_request", "demande_rib")],
    "sepa_mandate_missing": [_step("mandate_request", "mandate_request", "nouveau_mandat")],
    "sepa_refused": [_step("call", "call", "script_rejet_prelevement", channel="phone")],
    "sepa_deceased": [_step("letter", "letter", "courrier_succession", channel="letter")],
    "sepa_repeated_rejects": [
        _step("call", "call", "script_rejets_repetes", channel="phone"),
        _step("letter", "letter", "changement_mode_paiement", channel="letter", after_days=7),
    ],
    "sepa_insufficient_funds": [
        _step("sms", "sms", "sms_rejet_prelevement", channel="sms", fallback="letter"),
        _CALL,
    ],
    "sepa_rejected_other": [_step("sms", "sms", "sms_rejet_prelevement", channel="sms")],
    "aid_stopped": [_step("call", "call", "verification_dossier_caf", channel="phone")],
    "chronic_late_with_aid": [_REMINDER, _step("visit", "visit", "visite_conseiller",
                                               channel="visit", after_days=14)],
    "chronic_late_payer": [_REMINDER, _CALL],
    "fsl_household_in_debt": [
        _step("social_referral", "social_referral", "contact_referent_fsl", channel="letter"),
    ],
    "senior_in_debt": [
        _REMINDER,
        _step("social_referral", "social_referral", "orientation_travailleur_social",
              channel="letter", after_days=7),
    ],
    "large_low_income_family": [_REMINDER, _CALL],
    "very_low_income_in_debt": [
        _REMINDER,
        _step("social_referral", "social_referral", "orientation_travailleur_social",
              channel="letter", after_days=10),
    ],
    "young_tenant_in_debt": [_REMINDER, _step("email", "email", "conseil_budget",
                                              channel="email", after_days=3)],
    "new_tenant_in_debt": [_REMINDER, _CALL],
    "no_payment_60_days": [_CALL, _step("letter", "letter", "relance_recommandee",
                                        channel="letter", after_days=14)],
    "debt_over_90_days": [_step("formal_notice", "formal_notice", "mise_en_demeure",
                                channel="letter")],
    "debt_61_90_days": [_CALL, _step("letter", "letter", "relance_recommandee",
                                     channel="letter", after_days=10)],
    "debt_31_60_days": [_REMINDER, _CALL],
    "first_incident": [_REMINDER],
    "recent_debt_cheque_or_cash": [_REMINDER],
    "recent_debt_transfer": [_REMINDER],
    "recent_debt": [_REMINDER],
}  # fmt: skip

"""The sampling plan: what an admin writes, per project, to say what the week's labeling is for.

A plan is a YAML file validated by the pydantic model :class:`Plan`. Its published JSON Schema
is :func:`plan_schema`. Tiers carry defaults (a ``must_not_miss`` class gets a bigger quota, a
hard-negative share and more weight than an ``experimental`` one), so a minimal plan names its
classes and little else. Every default is written once, in :data:`TIER_DEFAULTS` or on a field.

:func:`load_plan` turns a file into a :class:`Plan` or raises :class:`PlanError`, whose
``problems`` say, for every mistake, the field path, the bad value and what is allowed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

Share = Annotated[float, Field(ge=0.0, lt=1.0)]
"""A fraction of the queue, in entries: 0.1 means one entry in ten."""

Rate = Annotated[float, Field(ge=0.0, le=1.0)]
"""A probability: 0.2 means one item in five, 1 means every item."""

#: The most of the queue that fixed shares (discovery, control, hard negatives) may reserve;
#: the rest is what quotas and the easy lane share.
MAX_RESERVED_SHARE = 0.9


class Tier(enum.StrEnum):
    """How much a class matters; sets the class's defaults."""

    must_not_miss = "must_not_miss"
    nice_to_have = "nice_to_have"
    experimental = "experimental"


class Weekday(enum.StrEnum):
    """The day a labeling week starts."""

    monday = "monday"
    tuesday = "tuesday"
    wednesday = "wednesday"
    thursday = "thursday"
    friday = "friday"
    saturday = "saturday"
    sunday = "sunday"

    @property
    def index(self) -> int:
        """Monday is 0, as in :meth:`datetime.date.weekday`."""
        return list(Weekday).index(self)


@dataclass(frozen=True)
class TierDefaults:
    """What a class of a tier gets when the plan does not say."""

    weekly_min: int
    hard_negative_share: float
    weight: float


TIER_DEFAULTS: dict[Tier, TierDefaults] = {
    Tier.must_not_miss: TierDefaults(weekly_min=50, hard_negative_share=0.05, weight=4.0),
    Tier.nice_to_have: TierDefaults(weekly_min=20, hard_negative_share=0.0, weight=2.0),
    Tier.experimental: TierDefaults(weekly_min=5, hard_negative_share=0.0, weight=1.0),
}


class _Section(BaseModel):
    """Every plan section rejects unknown keys, so a typo is an error, not a silent default."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ClassPlan(_Section):
    """One class: its tier, the Label Studio label values it maps to, and its weekly needs.

    ``weekly_min``, ``hard_negative_share`` and ``weight`` default from the tier (see
    :data:`TIER_DEFAULTS`). An ``easy`` class is frequent: it has no quota lane, its items come
    from the easy lane, which is capped until every must-not-miss quota is met.
    """

    tier: Tier
    labels: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list,
        description="Label Studio label values that mean this class; empty means the class name.",
    )
    easy: bool = Field(
        default=False,
        description="A frequent class: served by the capped easy lane instead of a quota lane.",
    )
    weekly_min: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="Items of this class wanted per week (the quota)."
    )
    hard_negative_share: Share | None = Field(
        default=None,
        description="Share of the queue for items that look like this class but probably are not.",
    )
    weight: Annotated[float, Field(gt=0.0)] | None = Field(
        default=None,
        description="How strongly this class's quota deficit claims annotator time.",
    )
    review_rate: Rate | None = Field(
        default=None,
        description="Share of this class's items sent to a blind second annotation (default: the tier's).",
    )

    @model_validator(mode="after")
    def _easy_has_no_quota(self) -> ClassPlan:
        if not self.easy:
            return self
        if self.tier is Tier.must_not_miss:
            raise ValueError(
                "a must_not_miss class cannot be easy: easy classes wait behind the "
                "must-not-miss quotas; set easy: false or choose tier nice_to_have"
            )
        if self.weekly_min or self.hard_negative_share:
            raise ValueError(
                "an easy class is served by the easy lane and has no quota or hard negatives; "
                "remove weekly_min and hard_negative_share, or set easy: false"
            )
        return self

    @property
    def quota(self) -> int:
        """The weekly minimum after tier defaults (0 for easy classes)."""
        if self.easy:
            return 0
        return TIER_DEFAULTS[self.tier].weekly_min if self.weekly_min is None else self.weekly_min

    @property
    def hard_negatives(self) -> float:
        """The hard-negative share after tier defaults (0 for easy classes)."""
        if self.easy:
            return 0.0
        default = TIER_DEFAULTS[self.tier].hard_negative_share
        return default if self.hard_negative_share is None else self.hard_negative_share

    @property
    def claim_weight(self) -> float:
        """The weight of this class's deficit after tier defaults."""
        return TIER_DEFAULTS[self.tier].weight if self.weight is None else self.weight


class EasyCap(_Section):
    """How many easy-class items a week may take before every must-not-miss quota is met."""

    per_week: Annotated[int, Field(ge=0)] = 200


class NearDuplicates(_Section):
    """The most items one near-duplicate group may contribute, this week and ever."""

    per_week: Annotated[int, Field(ge=1)] = 3
    overall: Annotated[int, Field(ge=1)] = 10

    @model_validator(mode="after")
    def _week_within_overall(self) -> NearDuplicates:
        if self.per_week > self.overall:
            raise ValueError(
                f"per_week ({self.per_week}) is larger than overall ({self.overall}); "
                "a group can never take more in a week than it may take in total"
            )
        return self


class Sources(_Section):
    """Which task data keys describe where an item comes from, and how diverse a class must be."""

    keys: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list,
        description="Task data keys naming the source, e.g. camera, lighting, location, season, sku.",
    )
    max_share: Annotated[float, Field(gt=0.0, le=1.0)] = Field(
        default=0.4,
        description="The most share one value of a key may take among a class's items this week.",
    )
    prefer_unseen: Annotated[float, Field(ge=0.0)] = Field(
        default=0.5,
        description="Priority bonus for a value never labeled for the class (0 turns it off).",
    )

    @field_validator("keys")
    @classmethod
    def _unique_keys(cls, keys: list[str]) -> list[str]:
        repeated = sorted({key for key in keys if keys.count(key) > 1})
        if repeated:
            raise ValueError(f"source keys must be unique; repeated: {', '.join(repeated)}")
        return keys


class HardNegatives(_Section):
    """Which items count as hard negatives: the score band of "looks like it, probably is not"."""

    min_score: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.15
    max_score: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5

    @model_validator(mode="after")
    def _band_is_ordered(self) -> HardNegatives:
        if self.min_score >= self.max_score:
            raise ValueError(
                f"min_score ({self.min_score}) must be below max_score ({self.max_score})"
            )
        return self


class Selection(_Section):
    """How a lane ranks its own candidates."""

    min_score: Annotated[float, Field(ge=0.0, lt=1.0)] = Field(
        default=0.05,
        description="The least probability of a class for an item to be a candidate of its quota lane.",
    )
    uncertainty_weight: Annotated[float, Field(ge=0.0)] = Field(
        default=0.5,
        description="How much a quota lane prefers items the model is unsure about.",
    )


class Week(_Section):
    """When a labeling week starts, in which time zone: quotas and caps reset then."""

    start: Weekday = Weekday.monday
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown time zone {name!r}; use an IANA name such as UTC or Europe/Berlin"
            ) from exc
        return name


class LeadTime(_Section):
    """Expected seconds to label one item, for classes without labeled history."""

    default_seconds: Annotated[float, Field(gt=0.0)] = 30.0


# --------------------------------------------------------------------------- review


TIER_ORDER: tuple[Tier, ...] = (Tier.must_not_miss, Tier.nice_to_have, Tier.experimental)
"""Tiers from the most to the least critical."""


class TierRates(_Section):
    """Base review rate per tier: the share of a tier's items that get a blind second annotation."""

    must_not_miss: Rate = 0.3
    nice_to_have: Rate = 0.1
    experimental: Rate = 0.05

    def of(self, tier: Tier) -> float:
        return float(getattr(self, tier.value))

    @model_validator(mode="after")
    def _critical_first(self) -> TierRates:
        rates = [self.of(tier) for tier in TIER_ORDER]
        if rates != sorted(rates, reverse=True):
            raise ValueError(
                f"review rates must not grow as tiers get less critical (must_not_miss >= "
                f"nice_to_have >= experimental); got {rates[0]}, {rates[1]}, {rates[2]}"
            )
        return self


class TierAql(_Section):
    """Acceptable quality level per tier: the error rate a lot may have and still pass."""

    must_not_miss: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.025
    nice_to_have: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.04
    experimental: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.065

    def of(self, tier: Tier) -> float:
        return float(getattr(self, tier.value))


class Switching(_Section):
    """ISO 2859-1-style switching between normal, tightened and reduced review (docs/review.md)."""

    window: Annotated[int, Field(ge=2)] = Field(
        default=5, description="Normal -> tightened looks at this many latest lots."
    )
    tighten_after: Annotated[int, Field(ge=1)] = Field(
        default=2, description="Failed lots within the window that switch normal -> tightened."
    )
    normal_after: Annotated[int, Field(ge=1)] = Field(
        default=5, description="Consecutive passing lots that switch tightened -> normal."
    )
    reduce_after: Annotated[int, Field(ge=1)] = Field(
        default=10, description="Consecutive passing lots that switch normal -> reduced."
    )
    tightened_factor: Annotated[float, Field(ge=1.0)] = Field(
        default=2.0, description="Review rate multiplier on tightened review (capped at 1)."
    )
    reduced_factor: Annotated[float, Field(gt=0.0, le=1.0)] = Field(
        default=0.4, description="Review rate multiplier on reduced review."
    )

    @model_validator(mode="after")
    def _window_holds_failures(self) -> Switching:
        if self.tighten_after > self.window:
            raise ValueError(
                f"tighten_after ({self.tighten_after}) is larger than window ({self.window}); "
                "that many failures can never fit in the window"
            )
        return self


class Escalation(_Section):
    """When an item goes to the expert reviewers, and when it counts as settled."""

    agreement_threshold: Annotated[float, Field(gt=0.5, le=1.0)] = Field(
        default=0.75,
        description="Share of annotators that must agree before an escalated item is settled.",
    )
    low_confidence: Annotated[float, Field(gt=0.0, le=1.0)] = Field(
        default=0.6,
        description="A must-not-miss class predicted at least min_score but below this escalates.",
    )
    min_score: Annotated[float, Field(ge=0.0, lt=1.0)] = Field(
        default=0.2, description="Below this a must-not-miss prediction is a plain negative."
    )
    max_annotations: Annotated[int, Field(ge=2)] = Field(
        default=5, description="No more annotations are asked for beyond this; an expert decides."
    )
    max_wait_hours: Annotated[float, Field(gt=0.0)] = Field(
        default=48.0, description="An escalation open longer than this raises an alarm."
    )
    experts: list[Annotated[str, Field(min_length=3)]] = Field(
        default_factory=list,
        description="Emails of the expert reviewers; an expert's annotation settles an item.",
    )

    @model_validator(mode="after")
    def _band_is_ordered(self) -> Escalation:
        if self.min_score >= self.low_confidence:
            raise ValueError(
                f"min_score ({self.min_score}) must be below low_confidence ({self.low_confidence})"
            )
        return self


class Alarms(_Section):
    """Thresholds of the alarms written into the project and exported as metrics."""

    zero_weeks: Annotated[int, Field(ge=1)] = Field(
        default=2, description="Weeks in a row with no new item of a rare class before an alarm."
    )
    min_expected: Annotated[float, Field(ge=0.0)] = Field(
        default=1.0,
        description="No zero-items alarm when the plan expected fewer items than this per week.",
    )
    disagreement: Rate = Field(
        default=0.15, description="A class's weekly disagreement rate above this raises an alarm."
    )
    min_reviewed: Annotated[int, Field(ge=1)] = Field(
        default=5, description="Reviewed items a week needs before its disagreement can alarm."
    )


class Review(_Section):
    """Risk-based review: which items get a blind second annotation, and what happens after.

    A plan without a ``review`` section does no review (``enabled`` is false); writing the
    section turns it on. See ``docs/review.md``.
    """

    enabled: bool = True
    rates: TierRates = Field(default_factory=TierRates)
    aql: TierAql = Field(default_factory=TierAql)
    small_lot: Annotated[int, Field(ge=0)] = Field(
        default=5,
        description="The first items of every lot are all reviewed: a lot this small gets 100 %.",
    )
    predicted_min_score: Annotated[float, Field(gt=0.0, le=1.0)] = Field(
        default=0.3,
        description="A class predicted at least this likely counts toward an item's risk tier.",
    )
    mode: Literal["auto", "second_annotation", "review_api"] = Field(
        default="auto",
        description=(
            "How sampled items are reviewed: second_annotation (a blind second annotation, any "
            "Label Studio), review_api (Label Studio Enterprise's review API), or auto (the review "
            "API where the server has one, else a second annotation)."
        ),
    )
    reviewers: list[Annotated[str, Field(min_length=3)]] = Field(
        default_factory=list,
        description=(
            "Emails of the reviewers sampled items are assigned to for review when the review API "
            "is used (the experts when empty)."
        ),
    )
    lot_grace_hours: Annotated[float, Field(ge=0.0)] = Field(
        default=24.0,
        description="A lot is judged this long after its week ends, so late reviews still count.",
    )
    switching: Switching = Field(default_factory=Switching)
    escalation: Escalation = Field(default_factory=Escalation)
    alarms: Alarms = Field(default_factory=Alarms)
    write_back: bool = Field(
        default=True, description="Write the metrics block into the project description."
    )
    annotator_quota_status: bool = Field(
        default=False, description="Show annotators a short quota status in the instructions."
    )


class Plan(_Section):
    """A sampling plan: classes and their quotas, caps, shares and the week they apply to.

    The queue is split in two. Fixed shares (``discovery_reserve``, ``control_share`` and each
    class's ``hard_negative_share``) are shares of queue entries and hold in every window of the
    queue. The rest is shared by the quota lanes and the easy lane by deficit, weighted by
    expected labeling time (see ``docs/planner.md``).
    """

    version: Literal[1] = 1
    seed: int = Field(default=0, description="Seed for the random lanes; same seed, same queue.")
    preannotations: bool = Field(
        default=True, description="Attach the backend's pre-annotation to queued tasks."
    )
    week: Week = Field(default_factory=Week)
    classes: dict[Annotated[str, Field(min_length=1)], ClassPlan] = Field(min_length=1)
    easy_cap: EasyCap = Field(default_factory=EasyCap)
    near_duplicates: NearDuplicates = Field(default_factory=NearDuplicates)
    sources: Sources = Field(default_factory=Sources)
    hard_negatives: HardNegatives = Field(default_factory=HardNegatives)
    discovery_reserve: Share = Field(
        default=0.1, description="Share of the queue always kept for finding rare-class items."
    )
    control_share: Share = Field(
        default=0.02, description="Share of the queue sampled uniformly at random."
    )
    selection: Selection = Field(default_factory=Selection)
    lead_time: LeadTime = Field(default_factory=LeadTime)
    review: Review = Field(
        default_factory=lambda: Review(enabled=False),
        description="Risk-based review; off unless the plan has this section (docs/review.md).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Plan:
        owner: dict[str, str] = {}
        for name, spec in self.classes.items():
            for label in spec.labels or [name]:
                if label in owner and owner[label] != name:
                    raise ValueError(
                        f"label value {label!r} maps to both {owner[label]!r} and {name!r}; "
                        "a Label Studio label may mean one class only"
                    )
                owner[label] = name
        reserved = self.reserved_share
        if reserved > MAX_RESERVED_SHARE:
            raise ValueError(
                f"discovery_reserve + control_share + hard_negative_share of all classes is "
                f"{reserved:.3f}; keep it at most {MAX_RESERVED_SHARE} so quotas get a share"
            )
        for name, spec in self.classes.items():
            lower = TIER_ORDER[TIER_ORDER.index(spec.tier) + 1 :]
            floor = max((self.review.rates.of(tier) for tier in lower), default=0.0)
            if spec.review_rate is not None and spec.review_rate < floor:
                raise ValueError(
                    f"class {name!r} ({spec.tier.value}) has review_rate {spec.review_rate}, below "
                    f"the {floor} of a less critical tier; a critical class is never reviewed less"
                )
        return self

    def review_rate(self, name: str) -> float:
        """The base review rate of a class: its own ``review_rate``, else its tier's."""
        spec = self.classes[name]
        return self.review.rates.of(spec.tier) if spec.review_rate is None else spec.review_rate

    @property
    def class_names(self) -> list[str]:
        """Class names in plan order; the column order of every score matrix."""
        return list(self.classes)

    @property
    def reserved_share(self) -> float:
        """The share of queue entries taken by fixed-share lanes."""
        hard = sum(spec.hard_negatives for spec in self.classes.values())
        return self.discovery_reserve + self.control_share + hard

    def label_map(self) -> dict[str, str]:
        """Every name a labeled task may carry (class names and Label Studio values) -> class."""
        mapping = {name: name for name in self.classes}
        for name, spec in self.classes.items():
            for label in spec.labels:
                mapping[label] = name
        return mapping

    def must_not_miss(self) -> list[str]:
        """Classes whose quotas gate the easy lane."""
        return [n for n, s in self.classes.items() if s.tier is Tier.must_not_miss]

    def rare(self) -> list[str]:
        """Classes that are not easy: they have quota lanes and may have hard negatives."""
        return [n for n, s in self.classes.items() if not s.easy]

    def easy(self) -> list[str]:
        """Frequent classes, served by the capped easy lane."""
        return [n for n, s in self.classes.items() if s.easy]


@dataclass(frozen=True)
class PlanProblem:
    """One thing wrong with a plan: where, what was found, and what would be accepted."""

    path: str
    message: str
    value: Any = None
    allowed: str | None = None

    def __str__(self) -> str:
        text = f"{self.path or '(plan)'}: {self.message}"
        if self.value is not None:
            text += f"; got {self.value!r}"
        if self.allowed:
            text += f"; allowed: {self.allowed}"
        return text


class PlanError(ValueError):
    """A plan file cannot be used; ``problems`` lists every reason, each with its field path."""

    def __init__(self, source: str, problems: list[PlanProblem]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {problem}" for problem in problems)
        super().__init__(f"{source}: {len(problems)} problem(s) in the plan:\n{lines}")


def load_plan(path: str | Path) -> Plan:
    """Read and validate a plan file; raise :class:`PlanError` naming every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PlanError(
            str(path), [PlanProblem("", f"cannot read the plan file ({exc.strerror})")]
        ) from exc
    return parse_plan(text, source=str(path))


def parse_plan(text: str, source: str = "<plan>") -> Plan:
    """Validate plan YAML text; raise :class:`PlanError` naming every problem."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise PlanError(
            source, [PlanProblem("", f"not valid YAML at {where}: {getattr(exc, 'problem', exc)}")]
        ) from exc
    if not isinstance(data, dict):
        raise PlanError(
            source,
            [
                PlanProblem(
                    "",
                    "a plan is a mapping of sections",
                    value=data,
                    allowed="a YAML mapping with at least `classes`",
                )
            ],
        )
    try:
        return Plan.model_validate(data)
    except ValidationError as exc:
        raise PlanError(source, [_problem(error) for error in exc.errors()]) from exc


def plan_schema() -> dict[str, Any]:
    """The JSON Schema of a plan file, for editors and CI checks."""
    schema = Plan.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "labelplan sampling plan"
    return schema


def _problem(error: Any) -> PlanProblem:
    """Turn one pydantic error into a problem that says what is allowed at that path."""
    loc = [str(part) for part in error["loc"]]
    kind = error["type"]
    ctx = error.get("ctx") or {}
    value = error.get("input")
    message = error["msg"]
    if kind == "value_error":
        message = str(ctx.get("error", message))
    allowed = _allowed(kind, ctx, loc)
    if kind == "missing":
        value = None
    elif kind in ("model_attributes_type", "dict_type") or isinstance(value, dict):
        value = None if isinstance(value, dict) else value
    return PlanProblem(path=".".join(loc), message=message, value=value, allowed=allowed)


def _allowed(kind: str, ctx: dict[str, Any], loc: list[str]) -> str | None:
    """What the field accepts, phrased for a person editing YAML."""
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        return ", ".join(model.model_fields) if model else None
    if kind in ("enum", "literal_error"):
        return str(ctx.get("expected", "")).replace("'", "")
    bounds = {"greater_than": "> {gt}", "greater_than_equal": ">= {ge}", "less_than": "< {lt}"}
    bounds |= {"less_than_equal": "<= {le}"}
    if kind in bounds:
        return "a number " + bounds[kind].format(**ctx)
    if kind == "too_short":
        return f"at least {ctx.get('min_length')} item(s)"
    simple = {
        "int_parsing": "a whole number",
        "int_from_float": "a whole number",
        "float_parsing": "a number",
        "bool_parsing": "true or false",
        "string_type": "a string",
        "list_type": "a list",
        "dict_type": "a mapping",
        "model_type": "a mapping",
        "model_attributes_type": "a mapping",
    }
    if kind in simple:
        return simple[kind]
    if kind == "string_too_short":
        return "a non-empty string"
    if kind == "missing":
        return "this field is required"
    return None


def _model_at(loc: list[str]) -> type[BaseModel] | None:
    """The section model that a path inside a plan points to, if any."""
    model: type[BaseModel] = Plan
    index = 0
    while index < len(loc):
        part = loc[index]
        if model is Plan and part == "classes":
            if index + 1 >= len(loc):
                return None
            model, index = ClassPlan, index + 2
            continue
        field = model.model_fields.get(part)
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model, index = annotation, index + 1
    return model

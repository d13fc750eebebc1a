"""Feature views: the profile from batch data, and behavioural features from the stream."""
from datetime import timedelta

from feast import FeatureView, Field
from feast.types import Bool, Float64, Int64, String

from data_sources import customer_profiles, journey_activity_push
from entities import customer
from journeys.features import PROFILE_VALUES  # the declared values: journeys policy check reads them

customer_profile = FeatureView(
    name="customer_profile",
    entities=[customer],
    ttl=timedelta(days=400),
    schema=[
        Field(name="lifetime_value", dtype=Float64, description="Revenue from the customer so far."),
        Field(name="segment", dtype=String, description="Marketing segment.",
              tags={"values": " ".join(PROFILE_VALUES["segment"])}),
        Field(name="tenure_days", dtype=Int64, description="Days since the customer's account was created."),
        Field(name="preferred_channel", dtype=String, description="The channel the customer answers most."),
        Field(name="consent_email", dtype=Bool),
        Field(name="consent_sms", dtype=Bool),
        Field(name="consent_push", dtype=Bool),
        Field(name="timezone", dtype=String, description="The customer's own time zone (IANA name), for quiet hours."),
    ],
    source=customer_profiles,
    online=True,
    tags={"owner": "crm", "refresh": "daily"},
)

journey_activity = FeatureView(
    name="journey_activity",
    entities=[customer],
    ttl=timedelta(days=7),
    schema=[
        Field(name="events_last_hour", dtype=Int64),
        Field(name="events_last_day", dtype=Int64),
        Field(name="cart_value", dtype=Float64, description="Value added to the cart since the last purchase."),
        Field(name="last_channel", dtype=String),
        Field(name="support_contacts_7d", dtype=Int64),
    ],
    source=journey_activity_push,
    online=True,
    tags={"owner": "journey-job", "refresh": "streaming"},
)

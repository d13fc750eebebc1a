"""Data sources. Paths are relative to this repository; `journeys simulate --profiles-out` writes
the profile file, the journey job pushes the activity features."""
from feast import FileSource, PushSource

customer_profiles = FileSource(
    name="customer_profiles",
    path="data/customer_profiles.parquet",
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
    description="Customer profiles as of their event timestamp, from the CRM (here: the simulator).",
)

journey_activity_history = FileSource(
    name="journey_activity_history",
    path="data/journey_activity.parquet",
    timestamp_field="event_timestamp",
    description="Behavioural features the journey job computed, when it also pushes offline.",
)

journey_activity_push = PushSource(
    name="journey_activity_push",
    batch_source=journey_activity_history,
    description="Fresh behavioural features pushed by the journey job as signals are applied.",
)

"""Feature services: versioned sets of features that agents and models are built against."""
from feast import FeatureService

from feature_views import customer_profile, journey_activity

journey_agent_v1 = FeatureService(
    name="journey_agent_v1",
    features=[customer_profile, journey_activity],
    description="What the journey agents read: the customer profile and fresh journey activity.",
)

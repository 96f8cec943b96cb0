"""Suite-wide settings: Hypothesis profiles (CI runs at least 200 examples each)."""

from hypothesis import HealthCheck, settings

settings.register_profile(
    "default",
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("default")

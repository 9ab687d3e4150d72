"""Fall back to a cached model when the model service is down.

Pattern: graceful degradation with trigger rules. ``score_with_model_service`` calls the online
model (retried twice). If it still fails, ``score_with_cached_model`` (trigger rule
``one_failed``) scores the same requests with a small model kept locally; if it succeeds, the
fallback is skipped. ``publish_scores`` (trigger rule ``one_success``) publishes whichever
scores exist and says where they came from. The run succeeds either way; the failed service
call stays visible in the run's task states and logs.

Why ``one_failed`` and not ``all_failed``: the fallback also reads the requests from
``fetch_scoring_requests``, and trigger rules count every upstream task, so that successful
upstream would make ``all_failed`` skip it.

Run it:

    phloem run examples/fallback.py                                # service up
    phloem run examples/fallback.py --param service_healthy=false  # fallback scores
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from sklearn.datasets import load_wine
from sklearn.ensemble import RandomForestClassifier
from sklearn.neighbors import NearestCentroid
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import phloem
from phloem import task


class ModelServiceUnavailable(ConnectionError):
    pass


@task
def fetch_scoring_requests(n_requests: int) -> pd.DataFrame:
    """Wines waiting for a cultivar prediction."""
    wine = load_wine(as_frame=True)
    requests = wine.data.sample(n_requests, random_state=11)
    requests.insert(0, "request_id", [f"Q{i:03d}" for i in requests.index])
    return requests.reset_index(drop=True)


@task(retries=2, retry_delay=0.1)
def score_with_model_service(requests: pd.DataFrame, service_healthy: bool) -> dict[str, Any]:
    """Stand-in for ``requests.post(MODEL_URL, json=...)`` to the online model."""
    if not service_healthy:
        raise ModelServiceUnavailable("model service: connection refused")
    wine = load_wine(as_frame=True)
    model = RandomForestClassifier(n_estimators=50, random_state=0).fit(wine.data, wine.target)
    predicted = model.predict(requests.drop(columns="request_id"))
    return {
        "source": "model_service",
        "scores": dict(zip(requests["request_id"], map(int, predicted), strict=True)),
    }


@task(trigger_rule="one_failed")
def score_with_cached_model(requests: pd.DataFrame) -> dict[str, Any]:
    """The last good lightweight model, kept for outages."""
    phloem.context().log.warning("model service failed: scoring with the cached model")
    wine = load_wine(as_frame=True)
    model = make_pipeline(StandardScaler(), NearestCentroid()).fit(wine.data, wine.target)
    predicted = model.predict(requests.drop(columns="request_id"))
    return {
        "source": "cached_model",
        "scores": dict(zip(requests["request_id"], map(int, predicted), strict=True)),
    }


@task(trigger_rule="one_success")
def publish_scores(
    from_service: dict[str, Any] | None, from_cache: dict[str, Any] | None
) -> dict[str, Any]:
    """Publish the scores that exist; a skipped or failed upstream passes None."""
    result = from_service or from_cache
    assert result is not None  # one_success guarantees one of them
    print(f"published {len(result['scores'])} scores from the {result['source']}")
    return {
        "source": result["source"],
        "n_scores": len(result["scores"]),
        "scores": result["scores"],
    }


@phloem.pipeline(tags=["inference", "resilience"])
def resilient_scoring(n_requests: int = 25, service_healthy: bool = True):
    """Score requests online, or with a cached model when the service is unavailable."""
    requests = fetch_scoring_requests(n_requests)
    online = score_with_model_service(requests, service_healthy)
    cached = score_with_cached_model(requests)
    online >> cached
    publish_scores(online, cached)

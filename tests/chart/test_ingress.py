"""The chart's edge limits (ingress.limits) in the words of each controller. Traefik's
Middleware objects are proven where Traefik serves them (tests/cluster/test_ingress.py);
ingress-nginx cannot run here, so its annotations are checked as rendered."""

from __future__ import annotations

from typing import Any

from tests.chart.rendering import of_kind, render

LIMITS = {"bodyBytes": 65536, "requestsPerSecond": 10, "burst": 25}


def _edge(controller: str, **limits: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    docs = render({"ingress": {
        "enabled": True, "controller": controller, "annotations": {"team": "care"},
        "limits": {**LIMITS, **limits},
    }})  # fmt: skip
    (ingress,) = of_kind(docs, "Ingress")
    return ingress["metadata"]["annotations"], of_kind(docs, "Middleware")


def test_ingress_nginx_gets_the_limits_as_its_annotations() -> None:
    annotations, middlewares = _edge("ingress-nginx")
    assert annotations == {
        "team": "care",
        "nginx.ingress.kubernetes.io/proxy-body-size": "65536",
        "nginx.ingress.kubernetes.io/limit-rps": "10",
        "nginx.ingress.kubernetes.io/limit-burst-multiplier": "3",  # 25 rounded up to 30
    }
    assert not middlewares


def test_traefik_gets_middlewares_named_on_its_router() -> None:
    annotations, middlewares = _edge("traefik", requestsPerSecond=0)
    (body,) = middlewares  # a zero turns the rate limit off
    assert body["spec"] == {"buffering": {"maxRequestBodyBytes": 65536}}
    assert annotations["traefik.ingress.kubernetes.io/router.middlewares"] == (
        "amrutam-amrutam-body-size@kubernetescrd"  # <namespace>-<name>
    )


def test_another_controller_gets_only_the_annotations_it_was_given() -> None:
    annotations, middlewares = _edge("other")
    assert annotations == {"team": "care"}
    assert not middlewares


def test_the_public_base_url_is_the_ingress_host_unless_given() -> None:
    """G5: the API writes absolute links from this setting, never from a Host header."""

    def base(values: dict[str, Any]) -> str:
        (env,) = (
            d
            for d in of_kind(render(values), "ConfigMap")
            if d["metadata"]["name"].endswith("-env")
        )
        return str(env["data"]["AMRUTAM_PUBLIC_BASE_URL"])

    tls = {
        "enabled": True,
        "host": "api.amrutam.health",
        "tls": {"enabled": True, "secretName": "t"},
    }
    assert base({}) == ""
    assert base({"ingress": tls}) == "https://api.amrutam.health"
    given = {"ingress": tls, "config": {"publicBaseUrl": "https://care.example/api"}}
    assert base(given) == "https://care.example/api"

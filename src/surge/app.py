"""The composition root: the domains Surge is made of, and what each process serves of them.

Every domain is named here, with its HTTP routes, the per-process state its routes need
(start-up and shut-down hooks) and the job tasks its workers run. ``surge api`` builds its
application from ``DOMAINS`` (``api_app``); ``surge worker`` runs ``tasks()``. Adding a
domain, a route module or a task means adding it here: nothing is found by a string or by
the side effects of an import somewhere else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from surge.api import app as api
from surge.api import health, reference
from surge.bounces import endpoints as bounces_api
from surge.campaigns import endpoints as campaigns_api
from surge.config import Settings
from surge.console import jobs as console_jobs
from surge.console import site as console_site
from surge.contacts import endpoints as contacts_api
from surge.contacts import jobs as contacts_jobs
from surge.delivery import figures as delivery_figures
from surge.dispatch import jobs as dispatch_jobs
from surge.dispatch import proofs as dispatch_proofs
from surge.donations import endpoints as donations_api
from surge.donations import gateway_jobs, refund_endpoints, stripe_events
from surge.donations import jobs as donations_jobs
from surge.donations import match_endpoints as matches_api
from surge.donations import peer_endpoints as peer_api
from surge.donations import recurring_endpoints as recurring_api
from surge.exports import endpoints as exports_api
from surge.exports import jobs as exports_jobs
from surge.givingday import pages as giving_day_pages
from surge.ingest import endpoints as ingest_api
from surge.ingest import jobs as ingest_jobs
from surge.jobs import builtin
from surge.jobs import metrics as jobs_metrics
from surge.jobs.registry import Registry, Task
from surge.journeys import endpoints as journeys_api
from surge.journeys import jobs as journeys_jobs
from surge.observability import cluster
from surge.segments import endpoints as segments_api
from surge.segments import jobs as segments_jobs
from surge.suppressions import endpoints as suppressions_api
from surge.tracking import endpoints as tracking_api
from surge.webhooks import endpoints as webhooks_api
from surge.webhooks import figures as webhooks_figures
from surge.webhooks import jobs as webhooks_jobs

Hook = Callable[[Starlette], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Domain:
    """One area of Surge as the processes see it."""

    name: str
    #: Served by ``surge api``, in this order after the ones before.
    routes: Sequence[BaseRoute] = ()
    #: Hot exact-path routes dispatched before Starlette (see ``api/fast.py``).
    fast_routes: Sequence[Route] = ()
    #: Per-process state the routes need: built when the API starts, closed when it stops.
    startup: Hook | None = None
    shutdown: Hook | None = None
    #: Run by ``surge worker``.
    tasks: Sequence[Task] = ()
    #: Its cluster-wide figures, read from the database once for all processes
    #: (``GET /metrics/cluster``, see ``observability/cluster.py``).
    figures: Sequence[cluster.Source] = ()


DOMAINS: tuple[Domain, ...] = (
    # First: the hottest routes, matched before the ~40 others on every event.
    Domain(
        "ingest",
        ingest_api.routes,
        fast_routes=ingest_api.fast_routes,
        startup=ingest_api.startup,
        shutdown=ingest_api.shutdown,
        tasks=(
            ingest_jobs.event_counts,
            ingest_jobs.webhooks,
            ingest_jobs.profiles,
            ingest_jobs.partitions,
            ingest_jobs.message_ids,
        ),
    ),
    Domain(
        "contacts",
        contacts_api.routes,
        tasks=(contacts_jobs.run_import, contacts_jobs.send_confirmations),
    ),
    # Public donor pages: matched early, as a giving day sends them most of the traffic.
    Domain(
        "giving-day",
        giving_day_pages.routes,
        fast_routes=giving_day_pages.fast_routes,
        startup=giving_day_pages.startup,
        shutdown=giving_day_pages.shutdown,
    ),
    Domain("suppressions", suppressions_api.routes),
    Domain(
        "segments",
        segments_api.routes,
        tasks=(segments_jobs.contact_activity, segments_jobs.prune_activity),
    ),
    Domain("campaigns", campaigns_api.routes, startup=campaigns_api.startup),
    Domain(
        "dispatch",
        tasks=(
            dispatch_jobs.plan,
            dispatch_jobs.send_chunk,
            dispatch_jobs.pick_winner,
            dispatch_jobs.finalise,
            dispatch_proofs.send_proof,
        ),
        figures=(delivery_figures.deferrals,),
    ),
    Domain(
        "journeys",
        journeys_api.routes,
        startup=journeys_api.startup,
        tasks=(
            journeys_jobs.run,
            journeys_jobs.events,
            journeys_jobs.cursors,
            journeys_jobs.dates,
            journeys_jobs.archive,
        ),
    ),
    Domain("bounces", bounces_api.routes, startup=bounces_api.startup),
    Domain(
        "tracking",
        tracking_api.routes,
        startup=tracking_api.startup,
        shutdown=tracking_api.shutdown,
    ),
    Domain(
        "webhooks",
        webhooks_api.routes,
        tasks=(webhooks_jobs.relay, webhooks_jobs.deliver),
        figures=(webhooks_figures.outbox,),
    ),
    Domain(
        "donations",
        donations_api.routes,
        fast_routes=donations_api.fast_routes,
        startup=donations_api.startup,
        shutdown=donations_api.shutdown,
        tasks=(donations_jobs.charge, donations_jobs.receipt, donations_jobs.recurring_gifts),
    ),
    # Recurring gifts: the donor's signed link and staff's view (charged by the task above).
    Domain("recurring gifts", recurring_api.routes),
    # Sponsors' matches and challenges; their shares are part of the campaign's totals.
    Domain("matches", matches_api.routes),
    # Peer-to-peer fundraising under a campaign: teams, fundraisers, leaderboards.
    Domain("peer-to-peer", peer_api.routes, startup=peer_api.startup),
    # Refunds, and what the payment gateway reports by webhook (docs/donations.md).
    Domain(
        "payments",
        (*refund_endpoints.routes, *stripe_events.routes),
        tasks=(
            gateway_jobs.refund,
            gateway_jobs.stripe_event,
            gateway_jobs.prune_stripe_events,
        ),
    ),
    Domain(
        "exports",
        exports_api.routes,
        startup=exports_api.startup,
        tasks=(exports_jobs.run_export, exports_jobs.expire),
    ),
    # The staff console: its pages under /console/ (not in /openapi.json: plain routes).
    Domain(
        "console",
        console_site.routes(),
        startup=console_site.startup,
        tasks=(console_jobs.prune,),
    ),
)

#: The engine's own tasks, for benchmarks, smoke tests and operators' checks.
BUILTIN_TASKS: tuple[Task, ...] = (builtin.noop, builtin.sleep, builtin.fail)


def routes() -> list[BaseRoute]:
    """Every route ``surge api`` serves: health and reference first, then each domain's."""
    figures = (jobs_metrics.cluster_figures, *(f for domain in DOMAINS for f in domain.figures))
    return [
        *health.routes,
        cluster.route(figures),
        *reference.routes,
        *(route for domain in DOMAINS for route in domain.routes),
    ]


def api_app(settings: Settings, database_url: str) -> ASGIApp:
    """The ASGI application of one ``surge api`` process."""
    donations_api.check_settings(settings)  # before serving: a ConfigError names the variable
    return api.create_app(
        settings,
        database_url,
        routes=routes(),
        fast_routes=[route for domain in DOMAINS for route in domain.fast_routes],
        lifecycles=[(domain.startup, domain.shutdown) for domain in DOMAINS],
    )


def tasks(extra: Sequence[Task] = ()) -> Registry:
    """Every task a worker runs: the engine's, each domain's, and ``extra``."""
    registry = Registry()
    for task in (*BUILTIN_TASKS, *(t for domain in DOMAINS for t in domain.tasks), *extra):
        registry.add(task)
    return registry

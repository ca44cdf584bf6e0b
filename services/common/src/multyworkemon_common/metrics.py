"""Prometheus metrics: one registry per application, the shared series every service exports.

Every series carries `service_name` so that one Prometheus query can compare services whatever
the scrape labels are. Label values are bounded: routes are templates, never raw paths.
"""

from __future__ import annotations

import os
import platform
import resource
import time

from aiohttp import web
from aioprometheus import Counter, Gauge, Histogram, Registry
from aioprometheus.renderer import render

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ServiceMetrics:
    """The registry of one service and the series shared by all services."""

    def __init__(self, service: str, version: str):
        self.registry = Registry()
        self.labels = {"service_name": service}
        self.build_info = self.gauge("mw_build_info", "Build information; always 1")
        self.build_info.set({"version": version, "python_version": platform.python_version()}, 1)
        self.ready = self.gauge("mw_ready", "1 when the service reports ready, else 0")
        self.ready.set({}, 0)
        self.http_requests = self.counter("mw_http_requests_total", "HTTP requests served, by route, method and status")
        self.http_duration = self.histogram("mw_http_request_duration_seconds", "HTTP request latency by route and method")
        self.http_in_flight = self.gauge("mw_http_requests_in_flight", "HTTP requests being served now")
        self.http_in_flight.set({}, 0)
        self.upstream_requests = self.counter("mw_upstream_requests_total", "Calls to other services by upstream and outcome")
        self.upstream_duration = self.histogram("mw_upstream_request_duration_seconds", "Latency of calls to other services")
        self.llm_requests = self.counter("mw_llm_requests_total", "LLM calls by provider, model and outcome")
        self.llm_duration = self.histogram("mw_llm_request_duration_seconds", "LLM call latency by provider and model")
        self.llm_tokens = self.counter("mw_llm_tokens_total", "LLM tokens by provider, model and kind (prompt, completion)")
        self.process_start = self.gauge("mw_process_start_time_seconds", "Start time of the process, seconds since the epoch")
        self.process_start.set({}, time.time())
        # Resource use of this process, refreshed at each scrape (a pod's view even without cAdvisor).
        self.process_cpu = self.counter("mw_process_cpu_seconds_total", "CPU time used by the process (user and system), seconds")
        self.process_memory = self.gauge("mw_process_resident_memory_bytes", "Resident memory of the process, bytes")
        self.process_fds = self.gauge("mw_process_open_fds", "Open file descriptors (sockets included) of the process")

    def counter(self, name: str, doc: str) -> Counter:
        return Counter(name, doc, const_labels=self.labels, registry=self.registry)

    def gauge(self, name: str, doc: str) -> Gauge:
        return Gauge(name, doc, const_labels=self.labels, registry=self.registry)

    def histogram(self, name: str, doc: str, buckets=LATENCY_BUCKETS) -> Histogram:
        return Histogram(name, doc, const_labels=self.labels, registry=self.registry, buckets=buckets)

    def refresh_process(self) -> None:
        self.process_cpu.set({}, time.process_time())
        try:
            with open("/proc/self/statm", encoding="ascii") as statm:
                self.process_memory.set({}, int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE"))
            self.process_fds.set({}, len(os.listdir("/proc/self/fd")))
        except OSError:  # not Linux: the peak resident size is the best there is
            self.process_memory.set({}, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)

    async def handle_metrics(self, request: web.Request) -> web.Response:
        self.refresh_process()
        body, headers = render(self.registry, request.headers.getall("Accept", []))
        return web.Response(body=body, headers=headers)

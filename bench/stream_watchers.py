"""Benchmark: N concurrent watchers of one run's live stream, held by ONE web process (gunicorn, 1 uvicorn worker).

    sudo .venv/bin/python bench/stream_watchers.py [--watchers 200] [--database-url URL --broker-url URL]

Its own lab (carpwat, 127.0.0.1 ports 28xxx) and a scratch carpweb. Phase 1: N watchers follow a setup run
(with configure) from start to end; every watcher must receive the same events, in order, and the end.
Phase 2: N watchers sit on a waiting run, then all drop their connections at once; the process must let go of
them (its open-stream count back to 0) and cost nothing afterwards. CPU and memory come from /proc.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter

import httpx
from harness import carpweb, children, lab, process_stats, report

Result = tuple[Counter[str], list[int]]


async def watch(client: httpx.AsyncClient, url: str) -> Result:
    """Read one SSE stream until its end event: the events by name, and the ids in order."""
    events: Counter[str] = Counter()
    ids: list[int] = []
    async with client.stream("GET", url, timeout=None) as response:
        buffer = ""
        async for chunk in response.aiter_text():
            buffer += chunk
            while "\n\n" in buffer:
                frame, buffer = buffer.split("\n\n", 1)
                fields = dict(line.split(": ", 1) for line in frame.splitlines() if ": " in line)
                if "id" in fields:
                    ids.append(int(fields["id"]))
                if "event" in fields:
                    events[fields["event"]] += 1
                    if fields["event"] == "end":
                        return events, ids
    return events, ids


async def log_in(client: httpx.AsyncClient, url: str) -> None:
    await client.get(url + "/login/")
    await client.post(url + "/login/", data={"username": "bench", "password": "bench-password-1",
                                             "csrfmiddlewaretoken": client.cookies.get("csrftoken", "")},
                      headers={"Referer": url + "/login/"})


async def streams(client: httpx.AsyncClient, url: str) -> int:
    return int((await client.get(url + "/health/")).json()["streams"])


async def wait_streams(client: httpx.AsyncClient, url: str, count: int, limit: float = 60) -> float:
    t0 = time.monotonic()
    while await streams(client, url) != count:
        if time.monotonic() - t0 > limit:
            raise RuntimeError(f"the web process holds {await streams(client, url)} streams, not {count}")
        await asyncio.sleep(0.1)
    return time.monotonic() - t0


async def sample(pid: int, stop: asyncio.Event, peaks: dict[str, float]) -> None:
    while not stop.is_set():
        now = process_stats(pid)
        peaks["rss_mb"] = max(peaks.get("rss_mb", 0), now["rss_mb"])
        peaks["threads"] = max(peaks.get("threads", 0), now["threads"])
        await asyncio.sleep(0.25)


async def follow_a_run(url: str, pid: int, n: int) -> dict[str, object]:
    from asgiref.sync import sync_to_async

    from carpweb.celery import app
    from wizard import revisions
    from wizard.models import Cluster, Run, Step

    cluster = await Cluster.objects.aget(name="web")
    run = await Run.objects.acreate(cluster=cluster, kind="setup", created_by_name="bench")
    after = await sync_to_async(revisions.current)()
    limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
    async with httpx.AsyncClient(limits=limits) as client:
        await log_in(client, url)
        idle = process_stats(pid)
        watchers = [asyncio.create_task(watch(client, f"{url}/runs/{run.pk}/events/?after={after}")) for _ in range(n)]
        connect_s = await wait_streams(client, url, n)
        held = process_stats(pid)
        stop, peaks = asyncio.Event(), dict[str, float]()
        sampler = asyncio.create_task(sample(pid, stop, peaks))
        t0, cpu0 = time.monotonic(), process_stats(pid)["cpu_s"]
        app.send_task("wizard.run_execute", args=[run.pk])
        results = await asyncio.wait_for(asyncio.gather(*watchers), timeout=300)
        seconds, cpu = time.monotonic() - t0, process_stats(pid)["cpu_s"] - cpu0
        stop.set()
        await sampler
        left_s = await wait_streams(client, url, 0)
    await run.arefresh_from_db()
    rows = await Step.objects.filter(run=run).acount()
    # Notices (no worker yet, ...) are derived, not resumed: a watcher gets one if it was there when it was sent.
    same = [(Counter({k: v for k, v in c.items() if k != "notice"}), ids) for c, ids in results]
    first = results[0]
    return {"watchers": n, "run_status": run.status, "rows": rows, "events_per_watcher": dict(first[0]),
            "all_watchers_got_the_same_events": all(r == same[0] for r in same),
            "ids_increasing": all(r[1] == sorted(set(r[1])) for r in results),
            "all_got_the_end": all(r[0]["end"] == 1 for r in results),
            "connect_s": round(connect_s, 2), "run_s": round(seconds, 1),
            "cpu_s_during_run": round(cpu, 2), "cpu_percent_during_run": round(100 * cpu / seconds, 1),
            "rss_mb_idle": round(idle["rss_mb"], 1), "rss_mb_with_watchers": round(held["rss_mb"], 1),
            "rss_mb_peak": round(peaks["rss_mb"], 1), "threads_idle": idle["threads"],
            "threads_peak": int(peaks["threads"]), "streams_closed_in_s": round(left_s, 2)}


async def drop_them_all(url: str, pid: int, n: int) -> dict[str, object]:
    from asgiref.sync import sync_to_async

    from wizard import revisions
    from wizard.models import Cluster, Run

    cluster = await Cluster.objects.aget(name="web")
    run = await Run.objects.acreate(cluster=cluster, kind="verify", created_by_name="bench")  # never sent
    after = await sync_to_async(revisions.current)()
    limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
    async with httpx.AsyncClient(limits=limits) as probe:
        await log_in(probe, url)
        async with httpx.AsyncClient(limits=limits, cookies=probe.cookies) as client:
            watchers = [asyncio.create_task(watch(client, f"{url}/runs/{run.pk}/events/?after={after}"))
                        for _ in range(n)]
            await wait_streams(probe, url, n)
            cpu0 = process_stats(pid)["cpu_s"]
            await asyncio.sleep(10)
            cpu_held = process_stats(pid)["cpu_s"] - cpu0
            for task in watchers:
                task.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
        released_s = await wait_streams(probe, url, 0, limit=30)
        cpu0 = process_stats(pid)["cpu_s"]
        await asyncio.sleep(10)
        cpu_after = process_stats(pid)["cpu_s"] - cpu0
    await Run.objects.filter(pk=run.pk).adelete()
    return {"idle_watchers": n, "cpu_percent_holding_them_10s": round(10 * cpu_held, 2),
            "released_in_s": round(released_s, 2), "cpu_percent_10s_after": round(10 * cpu_after, 2),
            "rss_mb_after": round(process_stats(pid)["rss_mb"], 1)}


def main() -> dict[str, object]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--watchers", type=int, default=200)
    ap.add_argument("--database-url", default="")
    ap.add_argument("--broker-url", default="")
    ap.add_argument("--json")
    args = ap.parse_args()
    with lab("carpwat", 28000) as world, carpweb(args.database_url, args.broker_url) as site:
        import os

        from django.contrib.auth.models import User

        from tests.helpers import lab_cluster

        lab_cluster(world, configure_service_ip=True)  # type: ignore[arg-type]
        User.objects.create_superuser("bench", password="bench-password-1")
        site.worker("-P", "prefork", "-c", "2")  # the pool these figures were measured with
        web, url = site.web(workers=1)
        pid = children(web.pid)[0]  # the uvicorn worker process (gunicorn's master only supervises it)
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
        result: dict[str, object] = {"database": "postgresql" if args.database_url else "sqlite",
                  "run": asyncio.run(follow_a_run(url, pid, args.watchers)),
                  "disconnect": asyncio.run(drop_them_all(url, pid, args.watchers))}
    return report(result, args.json)


if __name__ == "__main__":
    main()

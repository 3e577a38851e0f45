"""The Locust process stays flat over a long run (issue 24): Locust's per-second counts are
trimmed, and the run's timeline is thinned, never grown past its bound nor cut short."""

from __future__ import annotations

from types import SimpleNamespace

from locustfiles import telemetry


def fake_stats(seconds: range) -> SimpleNamespace:
    def entry() -> SimpleNamespace:
        return SimpleNamespace(
            num_reqs_per_sec={t: 1 for t in seconds}, num_fail_per_sec={t: 1 for t in seconds}
        )

    return SimpleNamespace(total=entry(), entries={("GET", "/a"): entry()})


def test_per_second_counts_older_than_the_window_are_dropped():
    stats = fake_stats(range(1000, 1100))
    telemetry.trim_per_second(stats, 1090.5)
    for entry in (stats.total, *stats.entries.values()):
        assert sorted(entry.num_reqs_per_sec) == list(range(1090, 1100))
        assert sorted(entry.num_fail_per_sec) == list(range(1090, 1100))
    telemetry.trim_per_second(stats, 1090.5)  # nothing older: nothing changes
    assert len(stats.total.num_reqs_per_sec) == 10


def test_locust_chart_history_is_thinned_and_spans_the_run():
    stats = SimpleNamespace(history=[])
    points = 24 * 3600 // 5  # a day of Locust's points, one each 5 s
    for t in range(points):
        stats.history.append({"time": t})
        telemetry.thin_chart_history(stats, most=100)
        assert len(stats.history) <= 100
    times = [point["time"] for point in stats.history]
    assert times[0] == 0 and times[-1] == points - 1  # the whole run, first and last point
    assert times == sorted(times) and len(times) >= 50


def test_the_timeline_is_thinned_at_its_bound_and_keeps_the_whole_run(monkeypatch):
    collector = telemetry.Collector(SimpleNamespace(stats=None))
    monkeypatch.setattr(collector, "note_workers", lambda: None)
    monkeypatch.setattr(collector, "merged", lambda: {})
    monkeypatch.setattr(telemetry, "timeline_point", lambda merged: {})
    clock = iter(range(10**6))
    monkeypatch.setattr(collector, "elapsed_s", lambda: float(next(clock)))
    samples = 3 * 3600  # three hours, one sample a second
    for _ in range(samples):
        collector.sample()
    timeline = collector.timeline
    assert len(timeline) < telemetry.MAX_TIMELINE_SAMPLES
    assert timeline[0]["t_s"] == 0.0 and timeline[-1]["t_s"] >= samples - 8  # the whole run
    gaps = {b["t_s"] - a["t_s"] for a, b in zip(timeline, timeline[1:], strict=False)}
    assert max(gaps) <= 8.0, gaps  # evenly thinned: every 8th second after 3 h


def test_only_the_total_keeps_its_response_time_copies():
    """Locust copies each entry's histogram once a second for its 10-s percentiles; the suite
    keeps the total's copies (what Locust reads: charts, chart history) and drops the others'."""
    from locust.stats import RequestStats

    stats = RequestStats(use_response_times_cache=True)
    for t in range(100, 160):  # a minute of requests on two entries, a new latency each second
        stats.log_request("POST", "/payouts", t, 0)
        stats.log_request("GET", "/wallet", 2 * t, 0)
        stats.total.last_request_timestamp = stats.entries[
            ("/payouts", "POST")
        ].last_request_timestamp = t
    named = stats.entries[("/payouts", "POST")]
    assert named.response_times_cache, "Locust caches every entry: nothing to drop"
    telemetry.drop_entry_response_time_caches(stats)
    for entry in stats.entries.values():
        assert entry.response_times_cache is None and not entry.use_response_times_cache
        entry.log(5000, 0)  # no copy made again
        assert entry.response_times_cache is None
    assert stats.total.use_response_times_cache and stats.total.response_times_cache is not None
    assert named.get_response_time_percentile(0.5) > 0  # the whole run's percentiles stay

"""`make mutation`'s score keys equivalent mutants by their diff, and fails on an entry nothing matches."""

from __future__ import annotations

import mutation_score


def test_equivalent_mutants_are_matched_by_diff_not_number_and_stale_entries_fail(monkeypatch, tmp_path, capsys):
    diffs = {"bench.stats.x_f__mutmut_1": ["-    n = 20", "+    n = 21"],
             "bench.stats.x_f__mutmut_2": ["-    return a", "+    return None"]}
    listed = tmp_path / "equivalent.txt"
    key = mutation_score.mutant_key("bench.stats.x_f__mutmut_7", diffs["bench.stats.x_f__mutmut_1"])
    assert key.startswith("bench.stats.x_f@") and key == mutation_score.mutant_key("bench.stats.x_f__mutmut_1",
                                                                                   diffs["bench.stats.x_f__mutmut_1"])
    listed.write_text(f"# comment\n{key}: 21 or 20 repetitions   [the diff]\n")
    monkeypatch.setattr(mutation_score, "EQUIVALENT", listed)
    monkeypatch.setattr(mutation_score, "mutant_diff", diffs.__getitem__)
    monkeypatch.setattr(mutation_score, "GOAL", 0.5)
    status = {"bench.stats.x_f__mutmut_1": "survived", **{f"bench.stats.x_g__mutmut_{i}": "killed" for i in range(3)}}
    monkeypatch.setattr(mutation_score, "mutmut_results", lambda: dict(status))
    assert mutation_score.main() == 0  # the survivor is explained by its diff: 3/3 scored
    assert "equivalent (tests/equivalent_mutants.txt): 1" in capsys.readouterr().out
    # The same number now names another mutant (the code moved): the entry matches nothing, and the score fails.
    status = {"bench.stats.x_f__mutmut_2": "survived", **{f"bench.stats.x_g__mutmut_{i}": "killed" for i in range(3)}}
    monkeypatch.setattr(mutation_score, "mutmut_results", lambda: dict(status))
    monkeypatch.setattr(mutation_score, "mutant_diff", lambda m: diffs["bench.stats.x_f__mutmut_2"])
    assert mutation_score.main() == 1
    out = capsys.readouterr().out
    assert f"listed as equivalent but no surviving mutant has this diff: {key}" in out
    assert "not killed: bench.stats.x_f__mutmut_2" in out

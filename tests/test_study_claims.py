"""studies/claims.py on a small fake study folder in the file formats the stages write: known
differences come out, an absent M3-vs-M2 consistency is reported as absent, and the packed copy
(no checkpoints, large jsonl gzip-compressed) regenerates identical tables."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cream_plugin.instruments.estimate import Estimate
from studies import anticorrelation
from studies import pack as packing
from studies.cells import level
from studies.claims import claims
from studies.embed import CLOSE, blocks, embed, embed_file
from studies.folder import read_jsonl, stored

SEEDS = (1, 2, 3)
PROMPTS = [f"arc_easy/arc_easy-train-{i}" for i in range(6)]
TASKS = ("cream_arc_easy", "cream_arc_challenge", "cream_openbookqa", "cream_siqa",
         "cream_cot_arc_easy", "cream_cot_arc_challenge", "cream_cot_openbookqa",
         "cream_cot_siqa")
ITEMS = 10
EXTRA_CHARS = 10  # cream's M2 responses are 10 + seed characters longer than cream-no-rc's


def write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def samples(folder: Path, rng: np.random.Generator, base: int) -> None:
    write(folder / "samples.jsonl", [
        {"prompt_id": p, "prompt": [{"role": "user", "content": "Q?"}], "source": "arc_easy",
         "reference": "B", "iteration": 2,
         "responses": ["x" * (base + int(k)) for k in rng.integers(0, 5, 4)]} for p in PROMPTS])
    write(folder / "correctness.jsonl",
          [{"prompt_id": p, "correct": rng.integers(0, 2, 4).astype(float).tolist()}
           for p in PROMPTS])


def logps(folder: Path, key: str, rng: np.random.Generator) -> None:
    write(folder / f"logps-{key}.jsonl",
          [{"prompt_id": p, "logps": (-rng.uniform(20, 60, 4)).tolist(),
            "num_tokens": rng.integers(5, 20, 4).tolist()} for p in PROMPTS])


def consistency(folder: Path, rng: np.random.Generator, shift: float) -> None:
    rows = []
    for p in PROMPTS:
        tau = float(np.clip(rng.uniform(-1, 1) + shift, -1, 1))
        rows.append({"prompt_id": p, "C": (tau + 1) / 2, "kendall": tau, "spearman": tau,
                     "toporder": float(tau > 0)})
    write(folder / "consistency.jsonl", rows)


def evals(run: Path, method: str, t: int, right: set[int]) -> None:
    rows = [{"method": method, "iteration": t, "task": "cream_arc_easy", "metric": "acc",
             "value": 0.5, "stderr": 0.1, "limit": ITEMS, "seconds": 1.0,
             "eval_settings": "abc"}]
    for task in TASKS:
        metric = {"exact_match": 0.0} if "cot" in task else {"acc": 0.0, "acc_norm": 0.0}
        for doc in range(ITEMS):
            scores = {k: float(doc in right) for k in metric}
            rows.append({"kind": "item", "method": method, "iteration": t, "task": task,
                         "doc_id": doc, "filter": "none", **scores})
    write(run / "evals" / f"{'sft-M1' if t == 1 else f'{method}-M{t}'}.jsonl", rows)


def fake_seed(top: Path, seed: int) -> None:
    run = top / f"seed-{seed}"
    rng = np.random.default_rng(seed)
    (run / "report.md").parent.mkdir(parents=True)
    (run / "report.md").write_text("# report\n")
    (run / "config.json").write_text(json.dumps({"seed": seed}))
    write(run / "timings.jsonl", [{"method": "sft", "iteration": 1, "stage": "sft",
                                   "name": "M1", "seconds": 7.0 + seed}])
    checkpoint = run / "cream" / "M3"
    checkpoint.mkdir(parents=True)
    (checkpoint / "model.safetensors").write_bytes(b"weights")
    (checkpoint / "config.json").write_text("{}")
    samples(run / "shared/iter1", rng, 30)
    for key in ("M0", "M1"):
        logps(run / "shared/iter1", key, rng)
    samples(run / "shared/iter2/M1", rng, 40)
    evals(run, "sft", 1, set(range(5)))
    for method, base, shift in (("cream-no-rc", 10, 0.5), ("cream", 10 + EXTRA_CHARS + seed, 0)):
        lengths_rng = np.random.default_rng(1000 + seed)  # the same draws: a fixed difference
        samples(run / method / "iter2", lengths_rng, base)
        for t in (1, 2):
            consistency(run / method / f"iter{t}", rng, shift)
            write(run / method / f"iter{t}" / "exact-kl.jsonl",
                  [{"prompt_id": p, "kl_forward": [0.1] * 4, "kl_reverse": [0.1] * 4,
                    "num_tokens": [10] * 4} for p in PROMPTS])
        for key in ("M0", "M1", f"{method}-M2"):
            logps(run / method / "iter2", key, rng)
        evals(run, method, 2, set(range(5)))
        # cream's M3 gets `seed` more items right per task: +10, +20, +30 points
        evals(run, method, 3, set(range(5 + (seed if method == "cream" else 0))))


@pytest.fixture(scope="module")
def text(study: Path) -> str:
    return claims(study)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    top = tmp_path_factory.mktemp("study")
    for seed in SEEDS:
        fake_seed(top, seed)
    return top


def verdict_row(text: str, key: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(f"| {key} |"))


def test_known_differences_come_out(text: str) -> None:
    assert f"Seeds: seed-1, seed-2, seed-3 (n = {len(SEEDS)})" in text
    # per seed +11, +12, +13 characters: mean 12, t-interval 12 -+ 4.303 / sqrt(3)
    length = verdict_row(text, "L")
    assert "12.000 (9.516 to 14.484; p = 0.00" in length and "+11, +12, +13" in length
    # McNemar per seed on 40 items (4 tasks x 10): +10, +20, +30 points, mean +20
    generative = verdict_row(text, "3 generative vs cream-no-rc")
    assert "+20.0 (" in generative and "items per seed 40, 40, 40" in generative
    assert "+10.0 (40 items, p 0.12)" in generative
    # The fake's cream has lower consistency than cream-no-rc (shift 0 vs 0.5).
    assert "estimate against the claimed direction" in verdict_row(text, "2") or \
        "reversed" in verdict_row(text, "2")
    assert "3 seeds; prompts per seed 6, 6, 6" in verdict_row(text, "2")
    assert "cannot be tested" in verdict_row(text, "1")  # no srlm in the folder


def test_a_claim_and_its_table_cell_are_one_test_in_the_family(text: str) -> None:
    family = text.split("## The family of comparisons")[1]
    assert family.count("length M2: cream - cream-no-rc") == 1
    assert "claim L:" not in family
    holm = next(line for line in family.splitlines()
                if line.startswith("| length M2: cream - cream-no-rc |"))
    p, adjusted = (float(x) for x in holm.split("|")[3:5])
    tests = int(family.split(":")[1].split("tests")[0])
    assert p < adjusted <= min(1.0, tests * p)
    assert f"(Holm p = {adjusted:.2g})" in verdict_row(text, "L")


def test_table1_shape_and_paper_cells(text: str) -> None:
    section = text.split("### Generative protocol (the paper's), exact_match")[1]
    average = section.split("**Average**")[1].split("###")[0]
    rows = {line.split("|")[1].strip(): line for line in average.splitlines()
            if line.startswith("| ")}
    assert rows["sft"].split("|")[2].strip() == "50.0%"
    assert rows["cream"].split("|")[4].strip().startswith("70.0% (")
    assert "n/a (not found offline)" in rows["cream"]


def test_missing_m3_vs_m2_is_reported_absent(text: str) -> None:
    table = text.split("## Ranking consistency")[1].split("##")[0]
    assert "| cream | M2 vs M1 |" in table and "M3 vs M2 |" not in table
    assert "M3 vs M2: absent for cream-no-rc, cream" in table
    assert "cannot be tested: no prompt with C" in verdict_row(text, "2b")


def test_controls_table_movement_and_lengths(text: str) -> None:
    controls = text.split("## Controls for the length finding")[1].split("Pool accuracy")[0]
    cream = next(line for line in controls.splitlines() if line.startswith("| cream |"))
    assert "0.01" in cream  # exact KL: 0.1 nats over 10 tokens per response
    assert "12.000 (9.516 to 14.484" in cream.split("|")[5]  # M2 - no-RC, paired per prompt


def test_levels_stay_in_the_range_their_quantity_can_take() -> None:
    # two seeds at 0% and 5% accuracy: the t-interval reaches -29%; an accuracy cannot
    accuracy = Estimate(0.025, low=-0.293, high=0.343, n=2)
    assert level(accuracy, "pct") == "2.5% (0.0%–34.3%)"
    assert level(Estimate(0.98, low=0.9, high=1.2, n=2), "pct").endswith("–100.0%)")
    length = Estimate(15.5, low=-81.0, high=112.0, n=2)
    assert level(length, digits=1, floor=0.0) == "15.5 (0.0 to 112.0)"
    assert level(Estimate(-3.0, low=-5.0, high=-1.0, n=2)).startswith("-3")  # no floor: kept
    # the appendix's statistics too: a Kendall tau stays in [-1, 1], a size at or above 0
    assert anticorrelation.cell(Estimate(-0.127, low=-6.8, high=6.6, n=2), "tau") \
        == "-0.127 (-1.000 to 1.000)"
    assert anticorrelation.cell(Estimate(0.02, low=-0.18, high=0.22, n=2), "size") \
        == "0.020 (0.000 to 0.220)"
    assert anticorrelation.cell(Estimate(-0.81, low=-14.3, high=12.7, n=2), "slope") \
        == "-0.810 (-14.300 to 12.700)"


def test_appendix_takes_seeds_as_replicates_not_pooled_prompts(text: str) -> None:
    appendix = text.split("## Appendix: why the implicit")[1].split("## Appendix: wall")[0]
    rows = [line for line in appendix.splitlines() if line.startswith("| iteration")]
    assert rows and all(line.rstrip(" |").endswith("prompts)") for line in rows)
    # 3 seeds of 6 prompts: n is the 3 seeds (each seed's prompt count shown), never 18 prompts
    assert all("| 3 seeds (" in line for line in rows if "C statistic" in line)
    assert not any("18 prompts" in line for line in rows)


def test_pack_round_trip_gives_identical_tables(study: Path, text: str, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(packing, "GZIP_ABOVE", 200)
    dest = tmp_path / "raw2"
    packing.pack(study, dest)
    assert not (dest / "seed-1" / "cream" / "M3").exists()  # no checkpoint
    packed = dest / "seed-1" / "cream" / "iter2" / "samples.jsonl.gz"
    assert packed.is_file() and not packed.with_suffix("").exists()
    assert stored(dest / "seed-1" / "cream" / "iter2" / "samples.jsonl") == packed
    assert read_jsonl(packed.with_suffix("")) == read_jsonl(
        study / "seed-1" / "cream" / "iter2" / "samples.jsonl")
    assert claims(dest) == text
    again = tmp_path / "again"
    packing.pack(study, again)
    assert packed.read_bytes() == (again / packed.relative_to(dest)).read_bytes()


def test_a_folder_without_finished_seeds_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "seed-1").mkdir()
    with pytest.raises(SystemExit, match="no finished seed"):
        claims(tmp_path)


def test_verdict_words_follow_from_the_numbers() -> None:
    from cream_plugin.instruments.estimate import Estimate
    from studies.verdicts import Claim, verdict

    def claim(e: Estimate, direction: int = 1) -> Claim:
        return Claim("x", "CREAM", "a above b", direction, "num", "t", "3 seeds", e)

    e = Estimate(0.2, 0.1, 0.3, n=3, p_value=0.01, mde=0.15)
    assert verdict(claim(e), 0.03) == "holds (Holm p = 0.03)"
    assert verdict(claim(e, -1), 0.03).startswith("reversed, significantly")
    small = Estimate(0.2, 0.1, 0.3, n=3, p_value=0.01, mde=0.25)
    assert verdict(claim(small), 0.2) == ("not detectable at MDE 0.25 (estimate in the claimed "
                                          "direction; Holm p = 0.2)")
    # beyond the single-test MDE yet not significant after Holm: never "not detectable"
    assert verdict(claim(e), 0.2) == (
        "not significant after Holm (estimate in the claimed direction, larger than the "
        "single-test MDE 0.15, unadjusted p = 0.01; Holm p = 0.2)")
    flat = Estimate(0.0, n=3, reason="all 3 seeds equal: no spread to build an interval from")
    assert verdict(claim(flat), float("nan")).startswith("cannot be tested: all 3 seeds equal")


def test_a_paper_number_in_the_data_file_shows_beside_ours(study: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from studies import table_benchmarks

    numbers = {**table_benchmarks.paper_numbers(),
               "table1": {"cream": {"ARC-E": {"M3": 12.5}}}}
    monkeypatch.setattr(table_benchmarks, "paper_numbers", lambda: numbers)
    text = "\n".join(table_benchmarks.benchmark_tables(sorted(study.glob("seed-*")),
                                                       ["sft", "cream"]))
    arc_e = text.split("### Generative protocol")[1].split("**ARC-C**")[0]
    cream = next(line for line in arc_e.splitlines() if line.startswith("| cream |"))
    assert cream.split("|")[-2].strip() == "12.5"
    assert cream.split("|")[-3].strip() == "n/a (not found offline)"


@pytest.mark.slow
def test_a_genuine_tiny_study_packs_and_regenerates_identical_tables(
        data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stages' real files: a two-seed smoke study on the tiny model (both protocols),
    packed with every jsonl compressed, gives the same tables as the run folder."""
    from cream_plugin.cli import main

    monkeypatch.setenv("CREAM_DATA_DIR", str(data_dir))
    out = tmp_path / "study"
    assert main(["run", "--preset", "smoke", "--method", "sft,cream-no-rc,cream",
                 "--seeds", "1,2", "--set", "evaluation.tasks=[cream_arc_easy,"
                 "cream_cot_arc_easy]", "-o", str(out)]) == 0
    text = claims(out)
    assert "Seeds: seed-1, seed-2 (n = 2)" in text
    assert "| cream | M2 vs M1 |" in text and "M3 vs M2: absent for cream-no-rc, cream" in text
    assert "items per seed 2, 2" in verdict_row(text, "3 generative vs cream-no-rc")
    assert "prompts per seed 6, 6" in verdict_row(text, "L")
    monkeypatch.setattr(packing, "GZIP_ABOVE", 0)
    packing.pack(out, tmp_path / "raw2")
    assert not list((tmp_path / "raw2").rglob("*.safetensors"))
    assert list((tmp_path / "raw2").rglob("samples.jsonl.gz"))
    assert claims(tmp_path / "raw2") == text


TABLE2 = "Ranking consistency (the paper's Table 2 shape)"
GEN_AVERAGE = ("Table 1's shape: benchmarks per method and iteration / "
               "Generative protocol (the paper's), exact_match / Average")


def test_a_document_embeds_the_tables_and_keeps_its_prose(text: str, tmp_path: Path) -> None:
    """study.md's tables come from claims.py: a marked block is replaced by the block of the
    same key, the prose around it stays word for word, and a second run changes nothing."""
    doc = tmp_path / "study.md"
    doc.write_text(f"# Study\n\nOur reading.\n\n<!-- claims: {TABLE2} -->\nstale table\n"
                   f"<!-- /claims -->\n\nMore prose.\n\n<!-- claims: {GEN_AVERAGE} -->\n"
                   "<!-- /claims -->\n")
    assert embed_file(doc, text)
    out = doc.read_text()
    assert "stale table" not in out
    assert out.startswith("# Study\n\nOur reading.\n\n") and "\n\nMore prose.\n\n" in out
    table2 = out.split(f"{TABLE2} -->")[1].split(CLOSE)[0]
    assert "| cream | M2 vs M1 |" in table2 and "| method | models | C |" in table2
    average = out.split(f"{GEN_AVERAGE} -->")[1].split(CLOSE)[0]
    assert "| method | M1 | M2 | M3 | paper M1 |" in average
    assert "**ARC-E**" not in average and "Log-likelihood" not in average
    # the generated Average table for the generative protocol, not another protocol's
    assert average.strip() == blocks(text)[GEN_AVERAGE]
    assert not embed_file(doc, text)


def test_an_unknown_key_or_an_unclosed_marker_names_the_file_and_line(text: str) -> None:
    with pytest.raises(KeyError, match=r"study\.md, line 2: no table block 'Tabel 2'"):
        embed("x\n<!-- claims: Tabel 2 -->\n<!-- /claims -->\n", text, name="study.md")
    with pytest.raises(ValueError, match=r"study\.md, line 3: .* is not closed"):
        embed(f"x\n\n<!-- claims: {TABLE2} -->\n| old |\n", text, name="study.md")


@pytest.mark.slow
def test_study_md_tables_are_what_claims_py_makes_of_the_committed_raw_material() -> None:
    """docs/study.md's embedded tables equal a fresh run of claims.py on docs/study/raw2."""
    root = Path(__file__).resolve().parents[1]
    doc = root / "docs" / "study.md"
    if "<!-- claims: " not in doc.read_text():
        pytest.skip("docs/study.md embeds no claims.py tables")
    fresh = claims(root / "docs" / "study" / "raw2")
    assert embed(doc.read_text(), fresh, name=str(doc)) == doc.read_text()
    assert (root / "docs" / "study" / "claims.md").read_text() == fresh


def test_movement_against_length_is_a_per_seed_rank_correlation(tmp_path: Path) -> None:
    """Per seed, rho between each implicit-reward method's exact KL and its answer length; a
    method without exact-KL rows drops out of that seed, and the seeds are the replicates."""
    from studies.table_controls import movement_and_length

    methods = ["cream-no-rc", "cream", "cream-shuffled-c", "cream-c-half"]
    kl = {1: [0.9, 0.1, 0.05, 0.01], 2: [0.9, 0.1, 0.05, 0.01]}
    chars = {1: [2, 30, 60, 90], 2: [2, 60, 30, 90]}  # seed 2: one swap (and no c-half KL)
    runs = []
    for seed in (1, 2):
        run = tmp_path / f"seed-{seed}"
        for m, k, n in zip(methods, kl[seed], chars[seed], strict=True):
            if not (seed == 2 and m == "cream-c-half"):
                write(run / m / "iter1" / "exact-kl.jsonl",
                      [{"prompt_id": p, "kl_forward": [k * 10] * 2, "num_tokens": [10] * 2}
                       for p in PROMPTS])
            write(run / m / "iter2" / "samples.jsonl",
                  [{"prompt_id": p, "responses": ["x" * n] * 2} for p in PROMPTS])
        runs.append(run)
    row = next(line for line in movement_and_length(runs, methods) if line.startswith("| M2 "))
    assert "| -1.00 (4), -0.50 (3) |" in row  # seed 2 without c-half: 3 methods, one swap
    assert row.split("|")[3].strip().startswith("-0.750 (")
    assert "n = 2" in row


def test_measure_table_gives_the_seed_level_mean_of_the_per_seed_aucs(text: str) -> None:
    table = text.split("## Which consistency measure")[1].split("\n## ")[0]
    row = next(line for line in table.splitlines() if line.startswith("| kendall |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    per_seed = [float(x.split()[1]) for x in cells[2].split("; ") if "n/a" not in x]
    assert len(cells) == 4 and per_seed
    assert cells[3].startswith(f"{np.mean(per_seed):.3f}")
    low, high = (float(x) for x in cells[3].split("(")[1].rstrip(")").split(" to "))
    assert 0.0 <= low <= high <= 1.0

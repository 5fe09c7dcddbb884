"""Do the 95% intervals cover the truth 95% of the time? A seeded simulation.

A truth raster of four classes with known areas (40/30/20/10% of 200,000
pixels), a map of it that confuses two pairs of classes (30% of class 1 mapped
as 0, 8% of 0 as 1; 30% of class 3 mapped as 2, 10% of 2 as 3), and 1,000
stratified random samples (strata = map classes, 120-130 units each, each
sample from its own seed). Per class, the area interval must cover the true
area in 93-97% of samples, the mean of the 1,000 estimates must lie within
0.1 typical SE of the truth (the estimator is unbiased; 1,000 samples put the
mean within about 0.03 SE by chance), and the map's pixel count of a confused
class must fall outside most intervals (that bias is what the sample is for).
The same coverage holds for overall and user's accuracy; a post-stratified
simple random sample of 500 is checked the same way.

Wald intervals of a binomial proportion cover between about 92.5 and 95.5%
depending on n and p (the lattice of x/n; Brown, Cai & DasGupta 2001); the
sample sizes here sit where the user's accuracies' Wald coverage is near 95%.
Wilson coverage, less sensitive to that, is reported beside it.

``coverage_figures()`` returns the figures; ``python -m
tests.cluster.accuracy.test_estimators_coverage`` prints them.
"""

from __future__ import annotations

import functools

import numpy as np

from cluster.accuracy import estimate_post_stratified, estimate_stratified
from cluster.accuracy.intervals import proportion_estimate

SEED = 20140601
REPLICATES = 1000
SHAPE = (400, 500)
TRUE_PIXELS = (80_000, 60_000, 40_000, 20_000)  # classes 0-3
CONFUSIONS = ((1, 0, 0.30), (0, 1, 0.08), (3, 2, 0.30), (2, 3, 0.10))  # truth, mapped as, share
SAMPLE = {0: 130, 1: 120, 2: 120, 3: 120}  # units per stratum (map class)
POST_STRATIFIED_N = 500
PIXEL_M2 = 100.0  # 10 m pixels
CLASSES = tuple(range(len(TRUE_PIXELS)))


def truth_and_map() -> tuple[np.ndarray, np.ndarray]:
    """The seeded truth raster (exact class counts) and the map that confuses it."""
    rng = np.random.default_rng(SEED)
    truth = np.repeat(np.array(CLASSES), TRUE_PIXELS)
    rng.shuffle(truth)
    mapped = truth.copy()
    for true_class, mapped_as, share in CONFUSIONS:
        pixels = np.flatnonzero(truth == true_class)
        mapped[rng.choice(pixels, round(share * len(pixels)), replace=False)] = mapped_as
    return truth.reshape(SHAPE), mapped.reshape(SHAPE)


@functools.cache
def coverage_figures() -> dict[str, dict]:
    """Coverage, bias (in SE) and how often the pixel count lies outside, per quantity."""
    truth, mapped = (a.ravel() for a in truth_and_map())
    total = truth.size
    sizes = {h: int((mapped == h).sum()) for h in CLASSES}
    true_area = np.array([(truth == k).sum() for k in CLASSES]) * PIXEL_M2 / 10_000
    true_users = np.array([(truth[mapped == k] == k).mean() for k in CLASSES])
    true_overall = (truth == mapped).mean()
    mapped_area = np.array([sizes[k] for k in CLASSES]) * PIXEL_M2 / 10_000
    reference_in = {h: truth[mapped == h] for h in CLASSES}
    strata = np.repeat(np.array(CLASSES), [SAMPLE[h] for h in CLASSES])

    area, area_se, area_in, mapped_out = (np.zeros((REPLICATES, 4)) for _ in range(4))
    users_in, wilson_in, post_in = (np.zeros((REPLICATES, 4)) for _ in range(3))
    overall, overall_se, overall_in = (np.zeros(REPLICATES) for _ in range(3))
    post_overall_in = np.zeros(REPLICATES)
    for i, seed in enumerate(np.random.SeedSequence(SEED).spawn(REPLICATES)):
        rng = np.random.default_rng(seed)
        reference = np.concatenate(
            [reference_in[h][rng.choice(sizes[h], SAMPLE[h], replace=False)] for h in CLASSES]
        )
        result = estimate_stratified(
            strata, strata, reference, sizes, classes=CLASSES, pixel_area_m2=PIXEL_M2
        )
        for k in CLASSES:
            a, u = result[k].area_ha, result[k].users
            area[i, k], area_se[i, k] = a.value, a.se
            area_in[i, k] = a.low <= true_area[k] <= a.high
            mapped_out[i, k] = not a.low <= mapped_area[k] <= a.high
            users_in[i, k] = u.low <= true_users[k] <= u.high
            w = proportion_estimate(u.value, u.se, interval="wilson", units=SAMPLE[k])
            wilson_in[i, k] = w.low <= true_users[k] <= w.high
        overall[i], overall_se[i] = result.overall.value, result.overall.se
        overall_in[i] = result.overall.low <= true_overall <= result.overall.high
        # A simple random sample of the whole map, post-stratified by map class.
        units = rng.choice(total, POST_STRATIFIED_N, replace=False)
        post = estimate_post_stratified(
            mapped[units], truth[units], sizes, classes=CLASSES, pixel_area_m2=PIXEL_M2
        )
        for k in CLASSES:
            post_in[i, k] = post[k].area_ha.low <= true_area[k] <= post[k].area_ha.high
        post_overall_in[i] = post.overall.low <= true_overall <= post.overall.high

    def per_class(values: np.ndarray) -> dict[int, float]:
        return {k: float(values[k]) for k in CLASSES}

    return {
        "area_coverage": per_class(area_in.mean(axis=0)),
        "area_bias_in_se": per_class((area.mean(axis=0) - true_area) / area_se.mean(axis=0)),
        "mapped_area_outside": per_class(mapped_out.mean(axis=0)),
        "users_coverage": per_class(users_in.mean(axis=0)),
        "users_coverage_wilson": per_class(wilson_in.mean(axis=0)),
        "overall": {
            "coverage": float(overall_in.mean()),
            "bias_in_se": float((overall.mean() - true_overall) / overall_se.mean()),
        },
        "post_stratified_area_coverage": per_class(post_in.mean(axis=0)),
        "post_stratified_overall_coverage": {"all": float(post_overall_in.mean())},
        "truth": {
            "area_ha": per_class(true_area),
            "mapped_area_ha": per_class(mapped_area),
            "users": per_class(true_users),
            "overall": float(true_overall),
        },
    }


def format_figures(figures: dict[str, dict]) -> str:
    lines = []
    for name, values in figures.items():
        if isinstance(values, dict) and name != "truth":
            shown = ", ".join(f"{k}: {v:+.3f}" if "bias" in name else f"{k}: {v:.3f}"
                              for k, v in values.items())  # fmt: skip
            lines.append(f"{name:34s} {shown}")
    return "\n".join(lines)


def test_area_intervals_cover_the_true_areas():
    figures = coverage_figures()
    print("\n" + format_figures(figures))
    for k in CLASSES:
        assert 0.93 <= figures["area_coverage"][k] <= 0.97, (k, figures["area_coverage"])
        assert abs(figures["area_bias_in_se"][k]) < 0.1, (k, figures["area_bias_in_se"])


def test_the_pixel_count_of_a_confused_class_lies_outside_most_intervals():
    outside = coverage_figures()["mapped_area_outside"]
    assert outside[0] > 0.5 and outside[1] > 0.5, outside  # 30% of class 1 mapped as 0


def test_accuracy_intervals_cover_the_true_accuracies():
    figures = coverage_figures()
    assert 0.93 <= figures["overall"]["coverage"] <= 0.97, figures["overall"]
    assert abs(figures["overall"]["bias_in_se"]) < 0.1, figures["overall"]
    for k in CLASSES:
        assert 0.93 <= figures["users_coverage"][k] <= 0.97, figures["users_coverage"]


def test_post_stratified_intervals_cover_the_truth():
    figures = coverage_figures()
    for k in CLASSES:
        coverage = figures["post_stratified_area_coverage"][k]
        assert 0.93 <= coverage <= 0.97, figures["post_stratified_area_coverage"]
    assert 0.93 <= figures["post_stratified_overall_coverage"]["all"] <= 0.97


if __name__ == "__main__":
    print(format_figures(coverage_figures()))

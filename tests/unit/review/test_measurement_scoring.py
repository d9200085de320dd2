"""The review page's Measurement section names the scoring method and the population from plausible values."""

import dataclasses
import html
import re

import numpy as np

from consumer.review.page import render
from tests.support.review_data import synthetic_review


def measurement_text(review) -> str:
    page = render(review)
    section = page.split('id="measurement"', 1)[1].split("<section", 1)[0]
    return html.unescape(re.sub(r"<[^>]+>", " ", section))


def test_the_section_names_the_method_and_its_infinite_estimates_and_the_plausible_values():
    review = synthetic_review(n_items=60, n_students=400)
    fit = {**review.run.fit_stats,
           "scoring": {"method": "ML", "at_bound": {"upper": 7, "lower": 5}},
           "plausible_values": {"draws": 5, "n": 388, "mean": 0.3512, "sd": 1.0987, "mean_between": 0.0123,
                                "sd_between": 0.0087, "mean_se": 0.0581, "sd_se": 0.0421,
                                "draw_means": [0.34, 0.35, 0.36, 0.35, 0.356], "draw_sds": [1.1] * 5}}
    se = review.theta_se.copy()
    se[:12] = np.nan  # the infinite ML estimates: no standard error
    review = dataclasses.replace(review, run=dataclasses.replace(review.run, fit_stats=fit), theta_se=se)

    text = " ".join(measurement_text(review).split())

    assert "scoring method ML: likelihood maximum" in text
    assert "12 estimates infinite, written at the end of the range (7 upper, 5 lower, no SE)" in text
    assert "mean 0.351 (SE 0.058, between draws \u00b10.012), SD 1.099 (SE 0.042, between draws \u00b10.009)" in text
    assert "5 per student, 388 students" in text
    assert "empirical reliability of the ML scores" in text
    assert f"median SE of theta {np.median(se[12:]):.3f}" in text
    assert "NaN" not in text and " nan" not in text, "no standard error shows as a number that is none"


def test_a_run_from_before_the_menu_reads_as_eap_without_plausible_values():
    review = synthetic_review(n_items=60, n_students=400)
    text = " ".join(measurement_text(review).split())
    assert "scoring method EAP: posterior mean" in text and "plausible values" not in text

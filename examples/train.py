"""A small, real ML stage: logistic regression on scikit-learn's bundled digits data set.

    python examples/train.py C=0.5                 # one run
    python examples/train.py --help                # every config field
    runlock ls train                               # browse the runs
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import runlock

log = logging.getLogger("train")


@dataclass
class Config:
    C: float = 1.0  # inverse regularisation strength
    max_iter: int = 200
    test_size: float = 0.25
    seed: int | None = None  # drawn and recorded when None


@runlock.stage
def train(cfg: Config) -> dict[str, float]:
    """Fit a logistic regression on the digits data and report test accuracy."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=cfg.test_size, random_state=cfg.seed)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=cfg.C, max_iter=cfg.max_iter))
    model.fit(X_tr, y_tr)
    acc = float(model.score(X_te, y_te))
    log.info("C=%s test accuracy %.4f", cfg.C, acc)
    coef = model[-1].coef_
    # outputs go next to the run's lock
    with open(runlock.current_run().dir / "coef_norms.json", "w") as f:
        json.dump([float(abs(c).sum()) for c in coef], f)
    return {"accuracy": acc, "train_size": len(y_tr)}


if __name__ == "__main__":
    runlock.main(train)

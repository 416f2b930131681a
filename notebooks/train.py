"""Stage train: fit a random forest on the training months; score it and a naive baseline on the test month."""
import json
from pathlib import Path

import pandas as pd
import skops.io as sio
import yaml
from sklearn.ensemble import RandomForestRegressor

params = yaml.safe_load(Path("params.yaml").read_text())["train"]
train = pd.read_csv("data/prepared/train.csv")
test = pd.read_csv("data/prepared/test.csv")
X, y = train.drop(columns="bikers"), train["bikers"]

model = RandomForestRegressor(**params, random_state=42, n_jobs=1).fit(X, y)
sio.dump(model, "model.skops")

predicted = model.predict(test.drop(columns="bikers"))
hour_mean = y.groupby(train["hr"]).mean()  # the baseline: the training months' mean at each hour
metrics = {"mae": round(float((test["bikers"] - predicted).abs().mean()), 2),
           "baseline_mae": round(float((test["bikers"] - test["hr"].map(hour_mean)).abs().mean()), 2)}
Path("metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
print(f"train: {params} -> {metrics}")

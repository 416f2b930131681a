"""Stage prepare: split data/bikes.csv by month into data/prepared/train.csv and test.csv."""
from pathlib import Path

import pandas as pd
import yaml

FEATURES = ["hr", "weekday", "workingday", "holiday", "weather", "temp", "atemp", "hum", "windspeed"]
WEATHER = {"clear": 1, "cloudy/misty": 2, "light rain/snow": 3, "heavy rain/snow": 4}

params = yaml.safe_load(Path("params.yaml").read_text())["prepare"]
bikes = pd.read_csv("data/bikes.csv")
bikes["weather"] = bikes["weathersit"].map(WEATHER)

Path("data/prepared").mkdir(parents=True, exist_ok=True)
for split in ("train", "test"):
    months = params[f"{split}_months"]
    rows = bikes[bikes["mnth"].isin(months)]
    rows[FEATURES + ["bikers"]].to_csv(f"data/prepared/{split}.csv", index=False)
    print(f"prepare: {len(rows)} {split} rows ({', '.join(months)})")

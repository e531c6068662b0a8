//! What Grafana does with `infra/grafana/`, done by the test against a
//! real influxd: a query's variables substituted as Grafana substitutes
//! them for InfluxQL, the HTTP query API's answer read into series, and an
//! alert rule (query, reduce, threshold, `for`) evaluated over the points
//! the query returns.

use std::collections::{BTreeMap, BTreeSet};

use horizon_e2e::servers::Influx1;
use serde_json::Value;

/// The database the tests write to.
pub const DB: &str = "telemetry";

/// One series of an InfluxQL answer.
#[derive(Debug, Clone)]
pub struct Series {
    /// The measurement.
    pub name: String,
    /// Its GROUP BY tags.
    pub tags: BTreeMap<String, String>,
    /// Column names (`time` first).
    pub columns: Vec<String>,
    /// Rows.
    pub values: Vec<Vec<Value>>,
}

impl Series {
    /// The numeric values of every column but `time` and tag columns, per row.
    pub fn numbers(&self) -> Vec<f64> {
        self.values
            .iter()
            .flat_map(|row| {
                row.iter()
                    .zip(&self.columns)
                    .filter(|(_, c)| *c != "time")
                    .filter_map(|(v, _)| v.as_f64())
            })
            .collect()
    }

    /// A label of the series: its tag, or a string column of its first row
    /// (`top`/`bottom` and raw selects return tags as columns).
    pub fn label(&self, key: &str) -> Option<String> {
        if let Some(v) = self.tags.get(key) {
            return Some(v.clone());
        }
        let i = self.columns.iter().position(|c| c == key)?;
        self.values.first()?.get(i)?.as_str().map(str::to_owned)
    }
}

/// Runs `q` (already substituted) against influxd; an error in the answer
/// (a syntax error, a type error) is an `Err` naming the query.
pub async fn run(influx: &Influx1, q: &str) -> Result<Vec<Series>, String> {
    let v = influx.query(DB, q).await;
    let result = &v["results"][0];
    if let Some(e) = result.get("error") {
        return Err(format!("influxd refused {q:?}: {e}"));
    }
    let mut out = Vec::new();
    for s in result["series"].as_array().cloned().unwrap_or_default() {
        out.push(Series {
            name: s["name"].as_str().unwrap_or_default().to_owned(),
            tags: s["tags"]
                .as_object()
                .map(|t| {
                    t.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                        .collect()
                })
                .unwrap_or_default(),
            columns: s["columns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_owned())
                .collect(),
            values: s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_array().unwrap().clone())
                .collect(),
        });
    }
    Ok(out)
}

/// A time range and the dashboard's variables, as Grafana holds them when
/// it sends a query.
#[derive(Debug, Clone)]
pub struct Scope {
    /// Range start and end, Unix ms.
    pub from_ms: i64,
    /// Range end, Unix ms.
    pub to_ms: i64,
    /// `$__interval`, e.g. `1s`.
    pub interval: String,
    /// Template variables: name to value, already formatted (a multi-value
    /// variable as `(a|b)`, All as its `allValue`).
    pub vars: BTreeMap<String, String>,
}

impl Scope {
    /// Substitutes the variables as Grafana's InfluxQL backend does:
    /// `$timeFilter` to `time >= {from}ms and time <= {to}ms`,
    /// `$__interval`, then `${name}` and `$name` (longest names first).
    pub fn substitute(&self, q: &str) -> String {
        let mut q = q.replace(
            "$timeFilter",
            &format!("time >= {}ms and time <= {}ms", self.from_ms, self.to_ms),
        );
        q = q.replace("$__interval", &self.interval);
        let mut names: Vec<_> = self.vars.keys().collect();
        names.sort_by_key(|n| std::cmp::Reverse(n.len()));
        for n in names {
            q = q.replace(&format!("${{{n}}}"), &self.vars[n]);
            q = q.replace(&format!("${n}"), &self.vars[n]);
        }
        let left = q.split('$').skip(1).any(|rest| {
            rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_' || c == '{')
        });
        assert!(!left, "a variable is left after substitution: {q}");
        q
    }
}

/// A series' identity as an alert instance: its tags.
pub type Labels = BTreeMap<String, String>;

/// One Grafana-managed alert rule of a provisioning file, in the shape
/// these files use: A (InfluxQL) -> B (reduce) -> C (threshold).
#[derive(Debug, Clone)]
pub struct Rule {
    /// `uid`.
    pub uid: String,
    /// The group's evaluation interval, seconds.
    pub interval_secs: i64,
    /// `for`, seconds.
    pub for_secs: i64,
    /// A's query.
    pub query: String,
    /// A's `relativeTimeRange.from`, seconds.
    pub window_secs: i64,
    /// B's reducer.
    pub reducer: String,
    /// C's evaluator type (`gt`, `lt`) and parameter.
    pub op: String,
    /// C's parameter.
    pub threshold: f64,
}

/// `1m`, `10m`, `0s`, `90s` in seconds.
pub fn duration_secs(s: &str) -> i64 {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = n.parse().unwrap_or_else(|_| panic!("duration {s:?}"));
    n * match unit {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3600,
        _ => panic!("duration unit in {s:?}"),
    }
}

impl Rule {
    /// Every rule of a provisioning document whose A is an InfluxQL query.
    pub fn all_influx(doc: &Value) -> Vec<Rule> {
        let mut out = Vec::new();
        for g in doc["groups"].as_array().expect("groups") {
            let interval = duration_secs(g["interval"].as_str().expect("interval"));
            for r in g["rules"].as_array().expect("rules") {
                let data = r["data"].as_array().expect("data");
                let by = |id: &str| {
                    data.iter()
                        .find(|d| d["refId"] == id)
                        .unwrap_or_else(|| panic!("rule {} has no {id}", r["uid"]))
                };
                let (a, b, c) = (by("A"), by("B"), by("C"));
                let Some(query) = a["model"]["query"].as_str() else {
                    continue;
                };
                assert_eq!(r["condition"], "C", "rule {}", r["uid"]);
                assert_eq!(b["model"]["type"], "reduce");
                assert_eq!(b["model"]["expression"], "A");
                assert_eq!(c["model"]["type"], "threshold");
                assert_eq!(c["model"]["expression"], "B");
                let ev = &c["model"]["conditions"][0]["evaluator"];
                out.push(Rule {
                    uid: r["uid"].as_str().unwrap().to_owned(),
                    interval_secs: interval,
                    for_secs: duration_secs(r["for"].as_str().expect("for")),
                    query: query.to_owned(),
                    window_secs: a["relativeTimeRange"]["from"].as_i64().expect("from"),
                    reducer: b["model"]["reducer"].as_str().unwrap().to_owned(),
                    op: ev["type"].as_str().unwrap().to_owned(),
                    threshold: ev["params"][0].as_f64().unwrap(),
                });
            }
        }
        out
    }

    /// One evaluation at `at_ms`: per series (by its tags), the reduced
    /// value and whether the threshold holds. Nulls are dropped, as the
    /// reduce's `dropNN` mode does; a series with no number is left out.
    pub async fn evaluate(
        &self,
        influx: &Influx1,
        at_ms: i64,
    ) -> Result<BTreeMap<Labels, (f64, bool)>, String> {
        let scope = Scope {
            from_ms: at_ms - self.window_secs * 1000,
            to_ms: at_ms,
            interval: "1m".into(),
            vars: BTreeMap::new(),
        };
        let mut out = BTreeMap::new();
        for s in run(influx, &scope.substitute(&self.query)).await? {
            let v = s.numbers();
            let Some(reduced) = reduce(&self.reducer, &v) else {
                continue;
            };
            let holds = match self.op.as_str() {
                "gt" => reduced > self.threshold,
                "lt" => reduced < self.threshold,
                op => return Err(format!("rule {}: evaluator {op}", self.uid)),
            };
            if out.insert(s.tags.clone(), (reduced, holds)).is_some() {
                return Err(format!(
                    "rule {}: two series with labels {:?} (Grafana refuses duplicate label sets)",
                    self.uid, s.tags
                ));
            }
        }
        Ok(out)
    }

    /// The alert instances firing at `now_ms`: series whose condition held
    /// at every evaluation from `now - for` to `now` (Grafana's Pending then
    /// Firing once pending for `for`).
    pub async fn firing(&self, influx: &Influx1, now_ms: i64) -> Result<BTreeSet<Labels>, String> {
        let evaluations = self.for_secs / self.interval_secs;
        let mut firing: Option<BTreeSet<Labels>> = None;
        for k in 0..=evaluations {
            let at = now_ms - k * self.interval_secs * 1000;
            let holding: BTreeSet<Labels> = self
                .evaluate(influx, at)
                .await?
                .into_iter()
                .filter(|(_, (_, h))| *h)
                .map(|(l, _)| l)
                .collect();
            firing = Some(match firing {
                None => holding,
                Some(f) => f.intersection(&holding).cloned().collect(),
            });
        }
        Ok(firing.unwrap_or_default())
    }
}

/// Grafana's reducers used by the rules.
fn reduce(reducer: &str, v: &[f64]) -> Option<f64> {
    let last = *v.last()?;
    Some(match reducer {
        "last" => last,
        "max" => v.iter().copied().fold(f64::MIN, f64::max),
        "min" => v.iter().copied().fold(f64::MAX, f64::min),
        "mean" => v.iter().sum::<f64>() / v.len() as f64,
        r => panic!("reducer {r} not modelled"),
    })
}

/// Reads a YAML file of the repository into JSON values.
pub fn yaml_file(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

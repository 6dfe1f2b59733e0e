//! The scenarios of many concurrent streams: many (as fast as they go, each read by
//! its creator) and llm_paced (at a model's pace, each read by its creator and by one
//! resumer on a second context).

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

use crate::bench::{peak_rss_mib, quantile, r3, Bench, Measured};
use crate::chunks::{
    concat, gated_source, make_input, no_produce, paced_source, read_checked, Emitted, CHUNK_BYTES,
};
use crate::{measure_end, measure_start};

/// What one llm_paced stream's two readers got.
struct Paced {
    creator_exact: bool,
    resumer_exact: bool,
    /// Per live chunk, ms from its source's yield to the reader's hands.
    creator_lags: Vec<f32>,
    resumer_lags: Vec<f32>,
}

/// Results of tasks: how many were `Ok(true)`, and the errors by message.
fn tally(outcomes: Vec<Result<bool, String>>) -> (usize, BTreeMap<String, u64>) {
    let mut ok = 0;
    let mut errors = BTreeMap::new();
    for outcome in outcomes {
        match outcome {
            Ok(true) => ok += 1,
            Ok(false) => {}
            Err(e) => *errors.entry(e).or_default() += 1,
        }
    }
    (ok, errors)
}

/// p50, p99 and max of `lags` into `out` as `{name}_p50_ms` etc.
fn lag_quantiles(name: &str, lags: Vec<f32>, out: &mut Map<String, Value>) {
    let mut lags: Vec<f64> = lags.into_iter().map(f64::from).collect();
    lags.sort_by(f64::total_cmp);
    for (suffix, p) in [("p50_ms", 50.0), ("p99_ms", 99.0), ("max_ms", 100.0)] {
        let value = quantile(&lags, p);
        out.insert(
            format!("{name}_{suffix}"),
            if value.is_nan() {
                Value::Null
            } else {
                json!(r3(value))
            },
        );
    }
    out.insert(format!("{name}_samples"), json!(lags.len()));
}

impl Bench {
    pub async fn many(&self) -> Result<Map<String, Value>, String> {
        let streams = self.args.streams.unwrap_or(2000);
        let per = self.args.chunks_per_stream.unwrap_or(50);
        let ctx = self.context().await?;
        let input = make_input(per);
        let expected = concat(&input);
        let ids: Vec<String> = (0..streams).map(|k| format!("many-{k}")).collect();
        let before = self.snapshot().await?;
        let rss_before = peak_rss_mib();
        let t0 = measure_start();
        let mut tasks = Vec::with_capacity(streams);
        for id in &ids {
            let (ctx, id, input, expected, progress) = (
                ctx.clone(),
                id.clone(),
                input.clone(),
                expected.clone(),
                self.progress.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let reader = match ctx
                    .resumable_stream(&id, move || gated_source(input, usize::MAX, None), None)
                    .await
                {
                    Ok(Some(reader)) => reader,
                    Ok(None) => return Err("stream already DONE".to_string()),
                    Err(e) => return Err(e.to_string()),
                };
                let out = read_checked(reader, expected, |_, _| {}).await?;
                progress.fetch_add(1, Ordering::Relaxed);
                Ok(out.is_exact())
            }));
        }
        let mut outcomes = Vec::with_capacity(streams);
        for task in tasks {
            outcomes.push(task.await.unwrap_or_else(|e| Err(e.to_string())));
        }
        let (ok, errors) = tally(outcomes);
        let (wall, minor_faults) = measure_end(t0);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let total = streams * per;
        let mut result = Map::new();
        result.insert(
            "params".into(),
            json!({"streams": streams, "chunks_per_stream": per, "chunk_bytes": CHUNK_BYTES}),
        );
        result.insert("wall_s".into(), json!(r3(wall)));
        result.insert("minor_faults".into(), json!(minor_faults));
        result.insert("chunks_per_s".into(), json!((total as f64 / wall).round()));
        result.insert("verified".into(), json!(ok == streams));
        result.insert("streams_ok".into(), json!(ok));
        result.insert("rss_before_mib".into(), json!(rss_before));
        let phase = Measured {
            chunks: total,
            new_streams: streams,
            stream_ids: &ids,
        };
        self.costs(&before, phase, &mut result).await?;
        if let Some(total) = result.get("redis_commands_total").and_then(Value::as_f64) {
            result.insert(
                "redis_commands_per_stream".into(),
                json!(r3(total / streams as f64)),
            );
        }
        if !errors.is_empty() {
            result.insert("errors".into(), json!(errors));
        }
        Ok(result)
    }

    /// `streams` streams at `rate` chunks/s each, their starts spread over one period;
    /// each read by its creator and, from its first chunk on, by one resumer on the
    /// second context. Besides the contract's keys: the lag of each live chunk (its
    /// source's yield to a reader's hands) per kind of reader.
    pub async fn llm_paced(&self) -> Result<Map<String, Value>, String> {
        let streams = self.args.streams.unwrap_or(1000);
        let per = self.args.chunks_per_stream.unwrap_or(100);
        let rate = self.args.rate;
        let period = Duration::from_secs_f64(1.0 / rate);
        let ctx_p = self.context().await?;
        let ctx_r = self.context().await?;
        let input = make_input(per);
        let expected = concat(&input);
        let ids: Vec<String> = (0..streams).map(|k| format!("llm-{k}")).collect();
        let before = self.snapshot().await?;
        let rss_before = peak_rss_mib();
        let t0 = measure_start();
        let (base, start) = (Instant::now(), tokio::time::Instant::now());
        let mut tasks = Vec::with_capacity(streams);
        for (k, id) in ids.iter().enumerate() {
            let start = start + period.mul_f64(k as f64 / streams as f64);
            let emitted = Emitted::new(base, per);
            let (ctx_p, ctx_r, id, input, expected, progress) = (
                ctx_p.clone(),
                ctx_r.clone(),
                id.clone(),
                input.clone(),
                expected.clone(),
                self.progress.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let marks = emitted.clone();
                let reader = ctx_p
                    .resumable_stream(&id, move || paced_source(input, start, period, marks), None)
                    .await
                    .map_err(|e| format!("creator: {e}"))?
                    .ok_or("creator: stream already DONE")?;
                let (first, first_rx) = oneshot::channel();
                let mut first = Some(first);
                let creator = read_lagged(reader, expected.clone(), &emitted, 0, || {
                    if let Some(first) = first.take() {
                        let _ = first.send(());
                    }
                });
                let resumer = async {
                    first_rx
                        .await
                        .map_err(|_| "creator ended before its first chunk".to_string())?;
                    let reader = ctx_r
                        .resumable_stream(&id, no_produce, None)
                        .await
                        .map_err(|e| format!("resumer: {e}"))?
                        .ok_or("resumer: stream already DONE")?;
                    let joined = emitted.now_ns();
                    read_lagged(reader, expected.clone(), &emitted, joined, || {}).await
                };
                let (creator, resumer) = tokio::join!(creator, resumer);
                let ((creator_exact, creator_lags), (resumer_exact, resumer_lags)) =
                    (creator?, resumer?);
                progress.fetch_add(1, Ordering::Relaxed);
                Ok::<_, String>(Paced {
                    creator_exact,
                    resumer_exact,
                    creator_lags,
                    resumer_lags,
                })
            }));
        }
        let (mut creator_lags, mut resumer_lags) = (Vec::new(), Vec::new());
        let (mut creators_ok, mut resumers_ok) = (0, 0);
        let mut outcomes = Vec::with_capacity(streams);
        for task in tasks {
            let outcome = task.await.unwrap_or_else(|e| Err(e.to_string()));
            outcomes.push(outcome.map(|paced| {
                creators_ok += usize::from(paced.creator_exact);
                resumers_ok += usize::from(paced.resumer_exact);
                creator_lags.extend(paced.creator_lags);
                resumer_lags.extend(paced.resumer_lags);
                paced.creator_exact && paced.resumer_exact
            }));
        }
        let (ok, errors) = tally(outcomes);
        let (wall, minor_faults) = measure_end(t0);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let total = streams * per;
        let mut result = Map::new();
        result.insert(
            "params".into(),
            json!({"streams": streams, "chunks_per_stream": per, "rate": rate,
                   "chunk_bytes": CHUNK_BYTES, "readers_per_stream": 2}),
        );
        result.insert("wall_s".into(), json!(r3(wall)));
        // The pace bounds it: streams × rate at best.
        result.insert("chunks_per_s".into(), json!((total as f64 / wall).round()));
        result.insert("paced_chunks_per_s".into(), json!(streams as f64 * rate));
        result.insert("minor_faults".into(), json!(minor_faults));
        result.insert("verified".into(), json!(ok == streams));
        result.insert("streams_ok".into(), json!(ok));
        result.insert("creators_exact".into(), json!(creators_ok));
        result.insert("resumers_exact".into(), json!(resumers_ok));
        result.insert("rss_before_mib".into(), json!(rss_before));
        lag_quantiles("creator_lag", creator_lags, &mut result);
        lag_quantiles("resumer_lag", resumer_lags, &mut result);
        let phase = Measured {
            chunks: total,
            new_streams: streams,
            stream_ids: &ids,
        };
        self.costs(&before, phase, &mut result).await?;
        if !errors.is_empty() {
            result.insert("errors".into(), json!(errors));
        }
        Ok(result)
    }
}

/// [`read_checked`], noting the lag of every chunk its source yielded after `since_ns`
/// (`on_first` after the first data): whether the bytes were exact, and the lags.
async fn read_lagged(
    reader: resumable_stream_tokio::ResumableStream,
    expected: std::sync::Arc<Vec<u8>>,
    emitted: &Emitted,
    since_ns: u64,
    mut on_first: impl FnMut(),
) -> Result<(bool, Vec<f32>), String> {
    let mut lags = Vec::new();
    let mut chunks = 0;
    let received = read_checked(reader, expected, |_, len| {
        on_first();
        let now = len / CHUNK_BYTES;
        lags.extend((chunks..now).filter_map(|i| emitted.lag_ms(i, since_ns)));
        chunks = now;
    })
    .await?;
    Ok((received.is_exact(), lags))
}

//! The scenarios of one stream: solo, fanout, resume_latency, join_live
//! (`../shared/peerbench/README.md`).

use bytes::Bytes;
use futures_util::stream;
use serde_json::{json, Map, Value};
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

use crate::bench::{quantile, r3, Bench, Measured};
use crate::chunks::{
    chunk, concat, gated_source, make_input, no_produce, read_checked, read_prefix,
    yielding_source, Received, CHUNK_BYTES,
};
use crate::{measure_end, measure_start};

/// The phase of one stream, created in it, of `chunks` chunks.
fn one(id: &[String], chunks: usize) -> Measured<'_> {
    Measured {
        chunks,
        new_streams: 1,
        stream_ids: id,
    }
}

impl Bench {
    pub async fn solo(&self) -> Result<Map<String, Value>, String> {
        let n = self.args.n;
        let ctx = self.context().await?;
        // The source owns its chunks, as a real one does: it yields them, the engine
        // and the reader share them.
        let input: Vec<Bytes> = (0..n).map(chunk).collect();
        let expected = concat(&input);
        let before = self.snapshot().await?;
        let t0 = measure_start();
        let source = move || stream::iter(input.into_iter().map(Ok::<_, Infallible>));
        let progress = self.progress.clone();
        // The caller runs on a task, as a server's handler does: a current-thread
        // runtime polls its `block_on` future only between rounds of up to 61 task
        // polls, so a reader there would start (and lag) that many of the producer
        // task's batches late, its mailbox holding them.
        let caller = ctx.clone();
        let read = tokio::spawn(async move {
            let reader = caller
                .resumable_stream("solo", source, None)
                .await
                .map_err(|e| e.to_string())?
                .ok_or("solo: the stream was already done")?;
            read_checked(reader, expected, move |k, _| {
                progress.store(k as u64, Ordering::Relaxed)
            })
            .await
        });
        let out = read.await.map_err(|e| e.to_string())??;
        let (wall, minor_faults) = measure_end(t0);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut result = Map::new();
        result.insert("params".into(), json!({"n": n, "chunk_bytes": CHUNK_BYTES}));
        result.insert("wall_s".into(), json!(r3(wall)));
        result.insert("minor_faults".into(), json!(minor_faults));
        result.insert("chunks_per_s".into(), json!((n as f64 / wall).round()));
        result.insert("verified".into(), json!(out.is_exact()));
        self.costs(&before, one(&["solo".into()], n), &mut result)
            .await?;
        Ok(result)
    }

    pub async fn fanout(&self) -> Result<Map<String, Value>, String> {
        let (n, resumers) = (self.args.n, self.args.resumers);
        let ctx_p = self.context().await?;
        let ctx_r = self.context().await?;
        let input = make_input(n);
        let expected = concat(&input);
        let (gate, gate_rx) = watch::channel(false);
        let gate = Arc::new(gate);
        let (first, mut first_rx) = watch::channel(false);
        let before = self.snapshot().await?;
        let t0 = measure_start();
        let source = input.clone();
        let reader = ctx_p
            .resumable_stream(
                "fanout",
                move || gated_source(source, 1, Some(gate_rx)),
                None,
            )
            .await
            .map_err(|e| e.to_string())?
            .ok_or("fanout: the stream was already done")?;
        let p_read = tokio::spawn(read_checked(reader, expected.clone(), move |k, _| {
            if k == 1 {
                let _ = first.send(true);
            }
        }));
        let _ = first_rx.wait_for(|v| *v).await;
        let joined = Arc::new(AtomicUsize::new(0));
        let mut r_reads = Vec::new();
        for _ in 0..resumers {
            let (ctx_r, gate, joined, expected) = (
                ctx_r.clone(),
                gate.clone(),
                joined.clone(),
                expected.clone(),
            );
            r_reads.push(tokio::spawn(async move {
                let reader = ctx_r
                    .resumable_stream("fanout", no_produce, None)
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or("resumer got None (stream DONE)")?;
                let mut seen = false;
                read_checked(reader, expected, |_, _| {
                    if !seen {
                        seen = true;
                        if joined.fetch_add(1, Ordering::SeqCst) + 1 == resumers {
                            let _ = gate.send(true);
                        }
                    }
                })
                .await
            }));
        }
        let deadline = {
            let gate = gate.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let _ = gate.send(true); // never wedge the producer
            })
        };
        let mut outs = vec![p_read.await.map_err(|e| e.to_string())?];
        for r in r_reads {
            outs.push(r.await.map_err(|e| e.to_string())?);
        }
        let (wall, minor_faults) = measure_end(t0);
        deadline.abort();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let per_reader: Vec<bool> = outs
            .iter()
            .map(|o| o.as_ref().is_ok_and(Received::is_exact))
            .collect();
        let mut result = Map::new();
        result.insert(
            "params".into(),
            json!({"n": n, "chunk_bytes": CHUNK_BYTES, "resumers": resumers}),
        );
        result.insert("wall_s".into(), json!(r3(wall)));
        result.insert("minor_faults".into(), json!(minor_faults));
        result.insert("chunks_per_s".into(), json!((n as f64 / wall).round()));
        result.insert("verified".into(), json!(per_reader.iter().all(|ok| *ok)));
        result.insert("per_reader_ok".into(), json!(per_reader));
        result.insert(
            "resumers_joined_before_gate".into(),
            json!(joined.load(Ordering::SeqCst)),
        );
        self.costs(&before, one(&["fanout".into()], n), &mut result)
            .await?;
        Ok(result)
    }

    /// Latency of a resume: from the call until the whole buffer (`preload` chunks) is
    /// in hand. A pub/sub resume gets it as its first message; a durable one reads it
    /// from the log, maybe in several entries.
    pub async fn resume_latency(&self) -> Result<Map<String, Value>, String> {
        let (preload, resumes) = (self.args.preload, self.args.resumes);
        let ctx_p = self.context().await?;
        let ctx_r = self.context().await?;
        let input = make_input(preload);
        let (finish, finish_rx) = watch::channel(false);
        let (preloaded, mut preloaded_rx) = watch::channel(false);
        let source = input.clone();
        let reader = ctx_p
            .resumable_stream(
                "lat",
                move || gated_source(source, preload, Some(finish_rx)),
                None,
            )
            .await
            .map_err(|e| e.to_string())?
            .ok_or("resume_latency: the stream was already done")?;
        // Every resume asks for skip 0, so it must get the whole buffer.
        let expected = concat(&input);
        let expected_len = expected.len();
        let p_read = tokio::spawn(read_checked(reader, expected.clone(), move |_, len| {
            if len == expected_len {
                let _ = preloaded.send(true);
            }
        }));
        let _ = preloaded_rx.wait_for(|v| *v).await;
        if self.args.durable {
            // Until the last chunk is in the log (one linger, then its append).
            let linger = self.durable().map_or(Duration::ZERO, |d| d.linger());
            tokio::time::sleep(linger * 2 + Duration::from_millis(50)).await;
        }
        let before = self.snapshot().await?;
        let mut lat = Vec::with_capacity(resumes);
        let (mut exact, mut first_whole) = (0, 0);
        let t00 = measure_start();
        for k in 0..resumes {
            let t0 = Instant::now();
            let mut reader = ctx_r
                .resumable_stream("lat", no_produce, Some(0))
                .await
                .map_err(|e| e.to_string())?
                .ok_or("resumer got None (stream DONE)")?;
            let (is_exact, whole) = read_prefix(&mut reader, &expected).await;
            lat.push(t0.elapsed().as_secs_f64() * 1000.0);
            exact += usize::from(is_exact);
            first_whole += usize::from(whole);
            drop(reader);
            self.progress.store(k as u64 + 1, Ordering::Relaxed);
        }
        let (loop_wall, minor_faults) = measure_end(t00);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut result = Map::new();
        self.costs(
            &before,
            Measured {
                chunks: 0,
                new_streams: 0,
                stream_ids: &["lat".into()],
            },
            &mut result,
        )
        .await?;
        let _ = finish.send(true);
        let producer_exact = matches!(p_read.await, Ok(Ok(out)) if out.is_exact());
        lat.sort_by(f64::total_cmp);
        result.insert(
            "params".into(),
            json!({"preload": preload, "chunk_bytes": CHUNK_BYTES, "resumes": resumes, "skip": 0}),
        );
        for (key, p) in [("p50_ms", 50.0), ("p90_ms", 90.0), ("p99_ms", 99.0)] {
            result.insert(key.into(), json!(r3(quantile(&lat, p))));
        }
        result.insert("max_ms".into(), json!(r3(lat[lat.len() - 1])));
        result.insert(
            "mean_ms".into(),
            json!(r3(lat.iter().sum::<f64>() / lat.len() as f64)),
        );
        result.insert("wall_s".into(), json!(r3(loop_wall)));
        result.insert("minor_faults".into(), json!(minor_faults));
        // The peer benches' key: resumes whose first message was exactly the buffer.
        result.insert("first_message_complete".into(), json!(first_whole));
        result.insert("resumes_exact".into(), json!(exact));
        result.insert("producer_exact".into(), json!(producer_exact));
        result.insert("verified".into(), json!(exact == resumes && producer_exact));
        let per_resume = |key: &str| {
            let total = result.get(key).and_then(Value::as_f64).unwrap_or(0.0);
            json!(r3(total / resumes as f64))
        };
        let commands = per_resume("redis_commands_total");
        let writes = per_resume("redis_writes");
        let reads = per_resume("server_socket_reads");
        result.insert("redis_commands_per_resume".into(), commands);
        result.insert("redis_writes_per_resume".into(), writes);
        result.insert("socket_reads_per_resume".into(), reads);
        Ok(result)
    }

    pub async fn join_live(&self) -> Result<Map<String, Value>, String> {
        let (n, resumers) = (self.args.n, self.args.resumers);
        let ctx_p = self.context().await?;
        let ctx_r = self.context().await?;
        let input = make_input(n);
        let expected = concat(&input);
        let join_at: Vec<usize> = (0..resumers)
            .map(|r| (r + 1) * n / (resumers + 1))
            .collect();
        let before = self.snapshot().await?;
        let t0 = measure_start();
        let source = input.clone();
        let reader = ctx_p
            .resumable_stream("live", move || yielding_source(source), None)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("join_live: the stream was already done")?;
        let mut r_reads = Vec::new();
        let p_out = read_checked(reader, expected.clone(), |_, len| {
            // A resumer joins once the producer's reader holds its chunk.
            while join_at
                .get(r_reads.len())
                .is_some_and(|&at| len / CHUNK_BYTES >= at)
            {
                let (ctx_r, expected) = (ctx_r.clone(), expected.clone());
                r_reads.push(tokio::spawn(async move {
                    match ctx_r.resumable_stream("live", no_produce, None).await {
                        Ok(Some(reader)) => read_checked(reader, expected, |_, _| {}).await,
                        Ok(None) => Err("<None: stream already DONE>".into()),
                        Err(e) => Err(e.to_string()),
                    }
                }));
            }
        })
        .await;
        let mut outs = vec![p_out];
        for r in r_reads {
            outs.push(r.await.map_err(|e| e.to_string())?);
        }
        let (wall, minor_faults) = measure_end(t0);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let describe = |o: &Result<Received, String>| match o {
            Err(e) => format!("error: {e}"),
            Ok(received) => received.describe(),
        };
        let per_reader: Vec<String> = outs.iter().map(describe).collect();
        let mut result = Map::new();
        result.insert(
            "params".into(),
            json!({"n": n, "chunk_bytes": CHUNK_BYTES, "resumers": resumers, "join_at": join_at}),
        );
        result.insert("wall_s".into(), json!(r3(wall)));
        result.insert("minor_faults".into(), json!(minor_faults));
        result.insert("chunks_per_s".into(), json!((n as f64 / wall).round()));
        result.insert(
            "verified".into(),
            json!(per_reader.iter().all(|d| d == "ok") && per_reader.len() == resumers + 1),
        );
        result.insert("per_reader".into(), json!(per_reader));
        self.costs(&before, one(&["live".into()], n), &mut result)
            .await?;
        Ok(result)
    }
}

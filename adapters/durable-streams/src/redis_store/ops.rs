//! The [`Store`] operations of [`RedisStore`]: arguments to scripts, replies to outcomes.

use super::*;

fn flag(b: bool) -> &'static [u8] {
    if b {
        b"1"
    } else {
        b"0"
    }
}

fn unexpected(code: &str) -> StoreError {
    StoreError(format!("unexpected script outcome {code:?}"))
}

impl RedisStore {
    async fn create_now(&self, id: &str, req: Create) -> Result<Created, StoreError> {
        let keys = self.keys(id)?;
        let (kind, value) = expiry_args(req.expiry);
        let value = value.to_string();
        let (source, offset, sub) = match &req.fork {
            Some(f) => (
                f.source.as_str(),
                f.offset.map(|o| o.to_string()).unwrap_or_default(),
                f.sub_offset.to_string(),
            ),
            None => ("", String::new(), "0".into()),
        };
        let ct = req.content_type.as_deref().unwrap_or("");
        let head: [&[u8]; 10] = [
            flag(req.content_type.is_some()),
            ct.as_bytes(),
            kind.as_bytes(),
            value.as_bytes(),
            flag(req.closed),
            flag(req.fork.is_some()),
            source.as_bytes(),
            offset.as_bytes(),
            sub.as_bytes(),
            b"0",
        ];
        // Without a fork, or to learn whether the fork exists already: no source yet.
        let mut args: Vec<&[u8]> = head.to_vec();
        args.extend_from_slice(&[b"", b"n", b"0", b"0", b"0"]);
        if req.fork.is_none() {
            args.extend(req.chunks.iter().map(|c| c.as_ref()));
        }
        let reply = self.run(&self.inner.scripts.create, &keys, &args).await?;
        let code = reply.code()?;
        if code != "needbase" {
            return created(&reply, &code);
        }
        // A new fork: reference the source (which hands over the inherited chunks),
        // then create; if another server created it meanwhile, take the reference back.
        let Some(fork) = &req.fork else {
            return Err(unexpected(&code));
        };
        let source_keys = self.keys(&fork.source)?;
        let base = self
            .run(
                &self.inner.scripts.fork,
                &source_keys,
                &[
                    flag(req.content_type.is_some()),
                    ct.as_bytes(),
                    offset.as_bytes(),
                    sub.as_bytes(),
                ],
            )
            .await?;
        match base.code()?.as_str() {
            "ok" => {}
            "notfound" => return Ok(Created::SourceNotFound),
            "deleted" => return Ok(Created::SourceDeleted),
            "type" => return Ok(Created::SourceTypeMismatch),
            "badpoint" => return Ok(Created::BadForkPoint),
            other => return Err(unexpected(other)),
        }
        let (base_ct, base_kind, base_value, base_offset) =
            (base.text(2)?, base.text(3)?, base.text(4)?, base.text(5)?);
        let inherited = base.chunks(6);
        let count = inherited.len().to_string();
        let mut args: Vec<&[u8]> = head.to_vec();
        args[9] = b"1";
        args.extend_from_slice(&[
            base_ct.as_bytes(),
            base_kind.as_bytes(),
            base_value.as_bytes(),
            base_offset.as_bytes(),
            count.as_bytes(),
        ]);
        args.extend(inherited.iter().map(|c| c.as_ref()));
        args.extend(req.chunks.iter().map(|c| c.as_ref()));
        let reply = self.run(&self.inner.scripts.create, &keys, &args).await;
        let outcome = reply.and_then(|reply| created(&reply, &reply.code()?));
        if !matches!(outcome, Ok(Created::New(_))) {
            self.release(Some(fork.source.clone())).await;
        }
        outcome
    }

    async fn append_now(&self, id: &str, req: Append) -> Result<Appended, StoreError> {
        let keys = self.keys(id)?;
        if self.cluster() {
            // The lease is in another slot: read before the script (see the README).
            let lease = self
                .query(redis::cmd("EXISTS").arg(keys.lease.as_ref()))
                .await
                .map_err(store_error)?;
            if lease == Value::Int(1) {
                return Ok(Appended::Owned);
            }
        }
        let (pid, epoch, seq) = match &req.producer {
            Some(p) => (p.id.as_str(), p.epoch.to_string(), p.seq.to_string()),
            None => ("", String::new(), String::new()),
        };
        let mut args: Vec<&[u8]> = vec![
            req.content_type.as_deref().unwrap_or("").as_bytes(),
            flag(req.close),
            flag(req.stream_seq.is_some()),
            req.stream_seq.as_deref().unwrap_or("").as_bytes(),
            flag(req.producer.is_some()),
            pid.as_bytes(),
            epoch.as_bytes(),
            seq.as_bytes(),
            flag(self.cluster()),
        ];
        args.extend(req.chunks.iter().map(|c| c.as_ref()));
        let reply = self.run(&self.inner.scripts.append, &keys, &args).await?;
        Ok(match reply.code()?.as_str() {
            "ok" => Appended::Done {
                tail: reply.num(2)?,
                closed: reply.num(3)? == 1,
            },
            "dup" => Appended::Duplicate {
                tail: reply.num(2)?,
                closed: reply.num(3)? == 1,
                last_seq: reply.num(4)?,
            },
            "closed" => Appended::Closed {
                tail: reply.num(2)?,
            },
            "stale" => Appended::StaleEpoch {
                current: reply.num(2)?,
            },
            "gap" => Appended::SeqGap {
                expected: reply.num(2)?,
            },
            "notfound" => Appended::NotFound,
            "gone" => Appended::Gone,
            "owned" => Appended::Owned,
            "type" => Appended::TypeMismatch,
            "seqreg" => Appended::SeqRegression,
            "epoch0" => Appended::NewEpochNotAtZero,
            other => return Err(unexpected(other)),
        })
    }

    async fn read_now(
        &self,
        id: &str,
        from: From,
        max_bytes: usize,
        touch: bool,
    ) -> Result<Read, StoreError> {
        let keys = self.keys(id)?;
        let start = match from {
            From::Tail => "tail".to_owned(),
            From::At(at) => at.to_string(),
        };
        let max = max_bytes.to_string();
        let args: [&[u8]; 3] = [start.as_bytes(), max.as_bytes(), flag(touch)];
        let reply = self.run(&self.inner.scripts.read, &keys, &args).await?;
        Ok(match reply.code()?.as_str() {
            "ok" => Read::Data {
                meta: reply.meta(2)?,
                start: reply.num(7)?,
                chunks: reply.chunks(8),
            },
            "notfound" => Read::NotFound,
            "gone" => Read::Gone,
            "pasttail" => Read::PastTail,
            "trimmed" => Read::BeforeRetained,
            other => return Err(unexpected(other)),
        })
    }

    /// Blocks in `XREAD` on the log (one Redis): any entry past `tail`, the end
    /// included, ends the wait.
    async fn wait_single(
        &self,
        keys: &StreamKeys,
        tail: u64,
        timeout: Duration,
    ) -> Result<(), StoreError> {
        let Conn::Single(single) = &self.inner.conn else {
            return Ok(());
        };
        let (client, idle) = (&single.client, &single.idle);
        let pooled = idle.lock().map(|mut v| v.pop()).unwrap_or(None);
        let mut conn = match pooled {
            Some(conn) => conn,
            None => {
                let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map_err(store_error)?
            }
        };
        let ms = u64::try_from(timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(ms)
            .arg("STREAMS")
            .arg(keys.log.as_ref())
            .arg(read_after(tail).to_string());
        let read = tokio::time::timeout(
            timeout + Duration::from_secs(1),
            cmd.query_async::<Value>(&mut conn),
        )
        .await;
        if let Ok(Ok(_)) = read {
            if let Ok(mut v) = idle.lock() {
                if v.len() < IDLE_BLOCKING {
                    v.push(conn);
                }
            }
        }
        Ok(())
    }

    /// Polls the stream's head (a Cluster, where a blocking read would hold a node's
    /// shared connection).
    async fn wait_polling(&self, id: &str, tail: u64, timeout: Duration) -> Result<(), StoreError> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.head_now(id).await? {
                Head::Found(meta) if !meta.closed && meta.tail <= tail => {}
                _ => return Ok(()),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            tokio::time::sleep(left.min(CLUSTER_POLL)).await;
        }
    }

    async fn head_now(&self, id: &str) -> Result<Head, StoreError> {
        let keys = self.keys(id)?;
        let reply = self.run(&self.inner.scripts.head, &keys, &[]).await?;
        Ok(match reply.code()?.as_str() {
            "ok" => Head::Found(reply.meta(2)?),
            "notfound" => Head::NotFound,
            "gone" => Head::Gone,
            other => return Err(unexpected(other)),
        })
    }
}

fn created(reply: &Reply, code: &str) -> Result<Created, StoreError> {
    Ok(match code {
        "new" => Created::New(reply.meta(2)?),
        "existing" => Created::Existing(reply.meta(2)?),
        "conflict" => Created::Conflict,
        other => return Err(unexpected(other)),
    })
}

impl Store for RedisStore {
    fn create<'a>(
        &'a self,
        id: &'a str,
        req: Create,
    ) -> BoxFuture<'a, Result<Created, StoreError>> {
        Box::pin(self.create_now(id, req))
    }

    fn append<'a>(
        &'a self,
        id: &'a str,
        req: Append,
    ) -> BoxFuture<'a, Result<Appended, StoreError>> {
        Box::pin(self.append_now(id, req))
    }

    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Deleted, StoreError>> {
        Box::pin(async move {
            let keys = self.keys(id)?;
            let reply = self.run(&self.inner.scripts.delete, &keys, &[]).await?;
            Ok(match reply.code()?.as_str() {
                "done" => Deleted::Done,
                "notfound" => Deleted::NotFound,
                "gone" => Deleted::Gone,
                other => return Err(unexpected(other)),
            })
        })
    }

    fn head<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Head, StoreError>> {
        Box::pin(self.head_now(id))
    }

    fn read<'a>(
        &'a self,
        id: &'a str,
        from: From,
        max_bytes: usize,
        touch: bool,
    ) -> BoxFuture<'a, Result<Read, StoreError>> {
        Box::pin(self.read_now(id, from, max_bytes, touch))
    }

    fn wait<'a>(
        &'a self,
        id: &'a str,
        tail: u64,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            if self.cluster() {
                return self.wait_polling(id, tail, timeout).await;
            }
            let keys = self.keys(id)?;
            self.wait_single(&keys, tail, timeout).await
        })
    }
}

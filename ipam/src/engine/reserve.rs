//! Reservations: job creation (carving), rank and next-free addresses, gangs.

use super::views::gang_view;
use super::*;

impl<S: Store> Ipam<S> {
    /// Reserves addresses for one attachment (creating the job network on first use).
    /// Idempotent per `req.key`: a repeat returns the stored attachment unchanged.
    pub async fn reserve(&self, req: ReserveRequest) -> Result<Attachment, IpamError> {
        self.reserve_new(req).await.map(|(a, _)| a)
    }

    /// [`Ipam::reserve`], also telling whether this call created the
    /// attachment (`false`: it was already recorded, and is returned as is).
    pub async fn reserve_new(&self, req: ReserveRequest) -> Result<(Attachment, bool), IpamError> {
        let rt = self.rt(&req.pool)?;
        check_len("job", &req.job, MAX_NAME)?;
        check_len("container id", &req.key.container_id, MAX_CONTAINER_ID)?;
        check_len("ifname", &req.key.ifname, MAX_IFNAME)?;
        if req.records.len() > MAX_RECORDS {
            return Err(IpamError::InvalidRequest(format!(
                "at most {MAX_RECORDS} records"
            )));
        }
        for r in &req.records {
            check_len("record key", &r.key, MAX_RECORD_KEY)?;
        }
        if let RailSelection::One(rail) = req.rails {
            if usize::from(rail) >= rt.pool.rail_names().len() {
                return Err(IpamError::UnknownRail {
                    pool: req.pool.clone(),
                    rail,
                });
            }
        }
        for _ in 0..MAX_ATTEMPTS {
            if let Step::Done(a) = self.try_reserve(rt, &req).await? {
                return Ok(a);
            }
        }
        Err(IpamError::Contention)
    }

    async fn try_reserve(
        &self,
        rt: &PoolRt,
        req: &ReserveRequest,
    ) -> Result<Step<(Attachment, bool)>, IpamError> {
        // Optimistic: no pre-reads of the attachment, its records or its rank
        // addresses. The transaction's compares decide, and only a failed
        // compare costs a read (to answer a repeat, or to name the holder).
        // The attachment's compare comes first, so a repeated reserve is
        // recognised as such whatever else it would collide with.
        let pool = &rt.pool;
        let akey = keys::attachment(&self.node, &req.key);
        let now = self.clock.now_ms();
        let mut claims = self.claims(rt);
        let mut txn = Txn::default();
        txn.compares.push(Compare::Absent(akey.clone()));
        let mut rank_keys = Vec::new();
        let (job, new_job) = self
            .job_for_write(rt, &req.job, now, &mut claims, &mut txn)
            .await?;
        if job.draining_since_ms.is_some() && !new_job {
            let mut undrained = job.clone();
            undrained.draining_since_ms = None;
            txn.ops
                .push(Op::Put(keys::job(&req.pool, &req.job), encode(&undrained)));
            txn.ops
                .push(Op::Delete(keys::draining(&req.pool, &req.job)));
        }
        if let (Some(rank), true) = (req.rank, job.world_size > 0) {
            if rank >= job.world_size {
                return Err(IpamError::RankOutOfRange {
                    rank,
                    limit: u64::from(job.world_size),
                });
            }
        }
        let holder = encode(&Holder {
            node: self.node.clone(),
            key: req.key.clone(),
            rank: req.rank,
        });
        let mut rails = Vec::new();
        let mut addr_keys = Vec::new();
        for (rail, subnets) in rails_of(&job, req.rails) {
            let mut ra = RailAddresses {
                rail,
                rail_name: rail_name(pool, rail),
                ips: Vec::new(),
                gateways: Vec::new(),
                isolation: isolation_on(pool, &job, rail),
            };
            for s in subnets {
                let layout = layout_of(pool, &s);
                let offset = match req.rank {
                    Some(rank) => {
                        let o = rank_offset(&layout, rank)?;
                        rank_keys
                            .push((rank, keys::addr(pool.name(), &req.job, rail, s.family, o)));
                        o
                    }
                    None => {
                        let (offset, block) = self
                            .next_free(pool, &req.job, &job, &s, &layout, new_job, &mut claims)
                            .await?;
                        if let Some(bk) = block {
                            txn.compares.push(Compare::Absent(bk.clone()));
                            txn.ops.push(Op::Put(bk, encode(&self.node)));
                        }
                        offset
                    }
                };
                let k = keys::addr(pool.name(), &req.job, rail, s.family, offset);
                txn.compares.push(Compare::Absent(k.clone()));
                txn.ops.push(Op::Put(k.clone(), holder.clone()));
                addr_keys.push(k);
                ra.ips.push(layout.host(offset));
                ra.gateways.extend(layout.gateway());
            }
            rails.push(ra);
        }
        let expires_at_ms = now.saturating_add(pool.timeout_ms());
        let att = Attachment {
            key: req.key.clone(),
            pool: req.pool.clone(),
            job: req.job.clone(),
            rank: req.rank,
            isolation: rails.first().and_then(|r| r.isolation),
            rails,
            state: AttachmentState::Reserved { expires_at_ms },
            records: req.records.iter().map(|r| r.key.clone()).collect(),
            created_ms: now,
        };
        for r in &req.records {
            let rk = keys::record(&self.node, &r.key);
            if r.if_absent {
                txn.compares.push(Compare::Absent(rk.clone()));
            }
            txn.ops.push(Op::Put(rk, encode(&r.value)));
        }
        let stored = StoredAttachment { att, addr_keys };
        txn.ops.push(Op::Put(akey.clone(), encode(&stored)));
        txn.ops.push(Op::Put(
            keys::pending(&self.node, expires_at_ms, &req.key),
            Vec::new(),
        ));
        txn.ops.push(Op::Put(
            keys::member(&req.pool, &req.job, &self.node, &req.key),
            Vec::new(),
        ));
        let jkey = keys::job(&req.pool, &req.job);
        let job_put = written(&txn, &jkey);
        // Deferred: the commit that confirms this reservation is durable and
        // takes it to disk with itself, and nothing relies on a reservation
        // before its commit. A crash in between loses it, and the commit
        // then fails as for an expired one (the ADD rolls back): one fsync
        // per attachment instead of two.
        match self.store.txn_deferred(txn).await? {
            TxnOutcome::Committed(rev) => {
                claims.committed = true;
                if let Some(rec) = job_put.and_then(|v| serde_json::from_slice(&v).ok()) {
                    self.put_cached_job(&jkey, &rec, rev);
                }
                self.remember_reservation(&req.key, &stored, rev);
                Ok(Step::Done((stored.att, true)))
            }
            TxnOutcome::Conflict(k) if k == akey => self.existing(&akey, req).await,
            TxnOutcome::Conflict(k) => {
                if let Some(r) = req
                    .records
                    .iter()
                    .find(|r| r.if_absent && keys::record(&self.node, &r.key) == k)
                {
                    return Err(IpamError::RecordExists(r.key.clone()));
                }
                if let Some((rank, _)) = rank_keys.iter().find(|(_, rk)| *rk == k) {
                    if let Some(v) = self.store.get(&k).await? {
                        let h: Holder = decode(&k, &v)?;
                        // Our own concurrent duplicate won: the retry finds the attachment.
                        if h.key != req.key {
                            return Err(IpamError::RankInUse {
                                rank: *rank,
                                holder: h.key,
                                node: h.node,
                            });
                        }
                    }
                }
                self.on_conflict(rt, &k);
                Ok(Step::Retry)
            }
        }
    }

    /// A reserve met an existing attachment with its key: the same answer
    /// for the same job, a conflict for another.
    async fn existing(
        &self,
        akey: &str,
        req: &ReserveRequest,
    ) -> Result<Step<(Attachment, bool)>, IpamError> {
        let Some(v) = self.store.get(akey).await? else {
            // Released in between: try again from scratch.
            return Ok(Step::Retry);
        };
        let st: StoredAttachment = decode(akey, &v)?;
        if st.att.pool == req.pool && st.att.job == req.job {
            return Ok(Step::Done((st.att, false)));
        }
        Err(IpamError::KeyInUse {
            key: req.key.clone(),
            pool: st.att.pool,
            job: st.att.job,
        })
    }

    /// Reads the job for a write, or carves a new one; adds the matching compares and ops.
    async fn job_for_write<'a>(
        &'a self,
        rt: &'a PoolRt,
        job: &str,
        now: u64,
        claims: &mut Claims<'a>,
        txn: &mut Txn,
    ) -> Result<(JobRecord, bool), IpamError> {
        let jkey = keys::job(rt.pool.name(), job);
        if let Some((rec, rev)) = self.cached_job(&jkey) {
            txn.compares.push(Compare::ModRevision(jkey, rev));
            return Ok((rec, false));
        }
        for gated in [false, true] {
            if gated {
                claims.gate = Some(self.gate(&jkey).await);
            }
            if let Some(v) = self.store.get(&jkey).await? {
                let rec: JobRecord = decode(&jkey, &v)?;
                self.put_cached_job(&jkey, &rec, v.mod_revision);
                txn.compares
                    .push(Compare::ModRevision(jkey, v.mod_revision));
                return Ok((rec, false));
            }
        }
        let rec = self.carve(rt, now, claims).await?;
        let name = encode(&job);
        for s in &rec.subnets {
            let k = keys::subnet(rt.pool.name(), s.family, s.index);
            txn.compares.push(Compare::Absent(k.clone()));
            txn.ops.push(Op::Put(k, name.clone()));
        }
        for &id in &rec.isolation_ids {
            let k = keys::isolation(rt.pool.name(), id);
            txn.compares.push(Compare::Absent(k.clone()));
            txn.ops.push(Op::Put(k, name.clone()));
        }
        txn.compares.push(Compare::Absent(jkey.clone()));
        txn.ops.push(Op::Put(jkey, encode(&rec)));
        Ok((rec, true))
    }

    /// Picks subnets (one per rail and family) and an isolation ID for a new job.
    async fn carve(
        &self,
        rt: &PoolRt,
        now: u64,
        claims: &mut Claims<'_>,
    ) -> Result<JobRecord, IpamError> {
        self.load_index(rt).await?;
        let pool = &rt.pool;
        let rails = pool.rail_names().len();
        let mut idx = lock(&rt.index);
        let mut subnets = Vec::with_capacity(rails * pool.families.len());
        for (pi, plan) in pool.families.iter().enumerate() {
            for rail in 0..rails {
                let set = idx
                    .subnets
                    .get_mut(pi)
                    .ok_or_else(|| IpamError::UnknownPool(pool.name().to_string()))?;
                let total = plan.total();
                let index = set
                    .pick(0, total.saturating_sub(1), |i| {
                        plan.subnet(i).is_some_and(|n| !plan.fully_excluded(&n))
                    })
                    .filter(|_| total > 0)
                    .ok_or_else(|| IpamError::PoolExhausted {
                        pool: pool.name().to_string(),
                        family: plan.family,
                    })?;
                claims.subnets.push((pi, index));
                let net = plan.subnet(index).ok_or_else(|| IpamError::PoolExhausted {
                    pool: pool.name().to_string(),
                    family: plan.family,
                })?;
                subnets.push(StoredSubnet {
                    rail: u16::try_from(rail).unwrap_or(u16::MAX),
                    family: plan.family,
                    index,
                    net,
                });
            }
        }
        let mut isolation_ids = Vec::new();
        if let Some((first, last)) = pool.isolation_range() {
            for _ in 0..pool.isolation_ids_per_job() {
                let id = idx
                    .isolation
                    .pick(u64::from(first), u64::from(last), |_| true)
                    .ok_or_else(|| IpamError::IsolationExhausted(pool.name().to_string()))?;
                claims.isolation.push(id);
                isolation_ids.push(u32::try_from(id).unwrap_or(u32::MAX));
            }
        }
        Ok(JobRecord {
            isolation_ids,
            subnets,
            world_size: 0,
            draining_since_ms: None,
            created_ms: now,
        })
    }

    /// A free allowed offset above the job's rank range, preferring this
    /// node's address blocks, then a block nobody holds yet (returned as the
    /// block key to claim in the same transaction), then other nodes' blocks.
    /// Within a block the highest free offset wins. Blocks only keep nodes from
    /// contending for the same address; every address is still claimed with
    /// its own compare, so a fallback into another node's block is safe.
    #[allow(clippy::too_many_arguments)]
    async fn next_free(
        &self,
        pool: &Pool,
        job_name: &str,
        job: &JobRecord,
        s: &StoredSubnet,
        layout: &SubnetLayout,
        new_job: bool,
        claims: &mut Claims<'_>,
    ) -> Result<(u64, Option<String>), IpamError> {
        let exhausted = || IpamError::SubnetExhausted {
            pool: pool.name().to_string(),
            job: job_name.to_string(),
            rail: s.rail,
            family: s.family,
        };
        let floor = match job.world_size {
            0 => None,
            n => Some(layout.nth_allowed(u64::from(n) - 1).ok_or_else(exhausted)?),
        };
        let above_floor = |o: u64| floor.is_none_or(|f| o > f);
        let bprefix = keys::block_prefix(pool.name(), job_name, s.rail, s.family);
        let owners: BTreeMap<u64, String> = if new_job {
            BTreeMap::new()
        } else {
            self.store
                .range(&bprefix, &prefix_end(&bprefix), usize::MAX)
                .await?
                .iter()
                .filter_map(|(k, v)| Some((keys::parse_index(k)?, decode::<String>(k, v).ok()?)))
                .collect()
        };
        let inflight_block = |b: u64| {
            lock(&self.inflight_addrs).contains(&keys::block(
                pool.name(),
                job_name,
                s.rail,
                s.family,
                b,
            ))
        };
        // This node's blocks: recorded, or being claimed by a concurrent request here.
        let mut mine: Vec<u64> = owners
            .iter()
            .filter(|(_, n)| **n == self.node)
            .map(|(b, _)| *b)
            .collect();
        let mut b = 0u64;
        let mut unowned = None;
        while let Some((_, high)) = layout.block_range(b, BLOCK_SIZE) {
            if !above_floor(high) {
                break;
            }
            if !owners.contains_key(&b) {
                if inflight_block(b) {
                    mine.push(b);
                } else if unowned.is_none() {
                    unowned = Some(b);
                }
            }
            if unowned.is_some() {
                break;
            }
            b += 1;
        }
        mine.sort_unstable();
        for b in mine {
            if let Some(o) = self
                .free_in_block(pool, job_name, s, layout, b, new_job, &above_floor, claims)
                .await?
            {
                return Ok((o, None));
            }
        }
        if let Some(b) = unowned {
            let bk = keys::block(pool.name(), job_name, s.rail, s.family, b);
            if lock(&self.inflight_addrs).insert(bk.clone()) {
                claims.addrs.push(bk.clone());
                if let Some(o) = self
                    .free_in_block(pool, job_name, s, layout, b, new_job, &above_floor, claims)
                    .await?
                {
                    return Ok((o, Some(bk)));
                }
            }
        }
        for (b, _) in owners.iter().filter(|(_, n)| **n != self.node) {
            if let Some(o) = self
                .free_in_block(pool, job_name, s, layout, *b, new_job, &above_floor, claims)
                .await?
            {
                return Ok((o, None));
            }
        }
        Err(exhausted())
    }

    /// The highest free allowed offset of block `b` above the rank floor,
    /// claimed in memory for this request.
    #[allow(clippy::too_many_arguments)]
    async fn free_in_block(
        &self,
        pool: &Pool,
        job_name: &str,
        s: &StoredSubnet,
        layout: &SubnetLayout,
        b: u64,
        new_job: bool,
        above_floor: &impl Fn(u64) -> bool,
        claims: &mut Claims<'_>,
    ) -> Result<Option<u64>, IpamError> {
        let Some((low, high)) = layout.block_range(b, BLOCK_SIZE) else {
            return Ok(None);
        };
        let taken: HashSet<u64> = if new_job {
            HashSet::new()
        } else {
            // Offsets are inverted in keys: the block's highest offset sorts first.
            let first = keys::addr(pool.name(), job_name, s.rail, s.family, high);
            let last = keys::addr(pool.name(), job_name, s.rail, s.family, low);
            self.store
                .range(&first, &key_after(&last), usize::MAX)
                .await?
                .iter()
                .filter_map(|(k, _)| keys::parse_addr_offset(k))
                .collect()
        };
        let mut cand = layout.prev_allowed(high);
        let mut inflight = lock(&self.inflight_addrs);
        while let Some(c) = cand.filter(|c| *c >= low && above_floor(*c)) {
            let k = keys::addr(pool.name(), job_name, s.rail, s.family, c);
            if !taken.contains(&c) && inflight.insert(k.clone()) {
                claims.addrs.push(k);
                return Ok(Some(c));
            }
            cand = c.checked_sub(1).and_then(|p| layout.prev_allowed(p));
        }
        Ok(None)
    }

    /// Reserves a whole job up front: subnets, isolation ID and the addresses of ranks
    /// `0..world_size`, all or nothing. Rank addresses are reserved by the job's world
    /// size (next-free allocations stay above it), so this is one small write.
    /// A gang job with no attachment drains like any empty job, grace counted from now.
    pub async fn gang_reserve(&self, req: GangRequest) -> Result<Gang, IpamError> {
        let rt = self.rt(&req.pool)?;
        check_len("job", &req.job, MAX_NAME)?;
        if req.world_size == 0 || req.world_size > MAX_WORLD_SIZE {
            return Err(IpamError::InvalidRequest(format!(
                "world size must be 1-{MAX_WORLD_SIZE}"
            )));
        }
        for _ in 0..MAX_ATTEMPTS {
            if let Step::Done(g) = self.try_gang(rt, &req).await? {
                return Ok(g);
            }
        }
        Err(IpamError::Contention)
    }

    async fn try_gang(&self, rt: &PoolRt, req: &GangRequest) -> Result<Step<Gang>, IpamError> {
        let pool = &rt.pool;
        let now = self.clock.now_ms();
        let mut claims = self.claims(rt);
        let mut txn = Txn::default();
        let (mut job, new_job) = self
            .job_for_write(rt, &req.job, now, &mut claims, &mut txn)
            .await?;
        if job.world_size >= req.world_size {
            return Ok(Step::Done(gang_view(pool, &req.job, &job, req.world_size)));
        }
        let last = u64::from(req.world_size - 1);
        for s in &job.subnets {
            let layout = layout_of(pool, s);
            let floor = layout.nth_allowed(last).ok_or(IpamError::SubnetExhausted {
                pool: req.pool.clone(),
                job: req.job.clone(),
                rail: s.rail,
                family: s.family,
            })?;
            if new_job {
                continue;
            }
            // Keys are ordered highest offset first: the tail of the range is the rank slots.
            let prefix = keys::addr_prefix(pool.name(), &req.job, s.rail, s.family);
            for (k, v) in self
                .store
                .range(&prefix, &prefix_end(&prefix), usize::MAX)
                .await?
            {
                let Some(off) = keys::parse_addr_offset(&k) else {
                    continue;
                };
                let h: Holder = decode(&k, &v)?;
                if off <= floor && h.rank.is_none() {
                    return Err(IpamError::GangConflict {
                        job: req.job.clone(),
                        world_size: req.world_size,
                        address: layout.addr(off),
                    });
                }
            }
        }
        job.world_size = req.world_size;
        let mp = keys::members_prefix(pool.name(), &req.job);
        let empty = new_job || self.store.range(&mp, &prefix_end(&mp), 1).await?.is_empty();
        if empty {
            job.draining_since_ms = Some(now);
            txn.ops
                .push(Op::Put(keys::draining(pool.name(), &req.job), Vec::new()));
        }
        let jkey = keys::job(pool.name(), &req.job);
        txn.ops
            .retain(|op| !matches!(op, Op::Put(k, _) if *k == jkey));
        txn.ops.push(Op::Put(jkey.clone(), encode(&job)));
        match self.store.txn(txn).await? {
            TxnOutcome::Committed(rev) => {
                claims.committed = true;
                self.put_cached_job(&jkey, &job, rev);
                Ok(Step::Done(gang_view(pool, &req.job, &job, req.world_size)))
            }
            TxnOutcome::Conflict(k) => {
                self.on_conflict(rt, &k);
                Ok(Step::Retry)
            }
        }
    }
}

/// The offset of a rank's address in a job subnet.
fn rank_offset(layout: &SubnetLayout, rank: u32) -> Result<u64, IpamError> {
    layout
        .nth_allowed(u64::from(rank))
        .ok_or(IpamError::RankOutOfRange {
            rank,
            limit: layout.capacity(),
        })
}

/// The value `txn` writes to `key`, if it writes one.
fn written(txn: &Txn, key: &str) -> Option<Vec<u8>> {
    txn.ops.iter().rev().find_map(|op| match op {
        Op::Put(k, v) if k == key => Some(v.clone()),
        _ => None,
    })
}

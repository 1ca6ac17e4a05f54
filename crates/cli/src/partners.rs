//! The partner, outsource and sync subcommands.

use std::sync::Arc;

use anyhow::Result;
use serde_json::json;
use ticketsync_app::pairing::{parse_duration_ms, DEFAULT_INVITE_TTL_MS};
use ticketsync_app::{now_ms, Instance};
use ticketsync_domain::{
    Command, Currency, InstanceId, LinkId, OutsourceCommand, Rate, Rounding, Terms, Timestamp,
};
use ticketsync_projections::links::TermsView;
use ulid::Ulid;

use crate::cli::{OutsourceCmd, PartnerCmd, SyncCmd, TermsArgs};
use crate::exit::{self, Failure};

pub async fn partner(inst: &Instance, c: PartnerCmd) -> Result<u8> {
    match c {
        PartnerCmd::Invite { name, expires_in } => {
            let ttl = if expires_in == "7d" {
                DEFAULT_INVITE_TTL_MS
            } else {
                parse_duration_ms(&expires_in)?
            };
            let code = inst.invite(&name, ttl).await?;
            println!(
                "Invitation for {name} (valid until {}).",
                Timestamp(now_ms() + ttl)
            );
            println!("On {name}, run: ticketsync partner join <code>");
            println!("{code}");
        }
        PartnerCmd::Join {
            code,
            map_organization,
        } => {
            let lead = inst.join(&code, map_organization).await?;
            println!("joined {lead}; the pairing completes when both sync daemons have run");
        }
        PartnerCmd::List { json } => {
            let partners = inst.store.list_partners().await?;
            let portals = inst.portal_companies().await?;
            if json {
                let mut rows: Vec<_> = partners
                    .iter()
                    .map(|p| {
                        json!({
                            "name": p.name, "kind": "instance", "state": p.state.as_str(),
                            "created_at": Timestamp(p.created_at).to_string(),
                            "expires_at": p.expires_at.map(|x| Timestamp(x).to_string()),
                            "paired_at": p.paired_at.map(|x| Timestamp(x).to_string()),
                            "organization": p.organization,
                        })
                    })
                    .collect();
                rows.extend(portals.values().map(|p| {
                    json!({
                        "name": p.name, "kind": "portal", "state": "portal",
                        "created_at": Timestamp(p.added_at).to_string(),
                        "transaction_fee": p.transaction_fee.map(|a| json!({
                            "amount": a, "currency": p.currency,
                        })),
                    })
                }));
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!("{:<32}  {:<8}  SINCE", "PARTNER", "STATE");
                for p in partners {
                    let since = p.paired_at.unwrap_or(p.created_at);
                    println!(
                        "{:<32}  {:<8}  {}",
                        p.name,
                        p.state.as_str(),
                        Timestamp(since)
                    );
                }
                for p in portals.values() {
                    let fee = match (&p.transaction_fee, &p.currency) {
                        (Some(a), Some(c)) => format!("  (transaction fee {a} {c})"),
                        _ => String::new(),
                    };
                    println!(
                        "{:<32}  {:<8}  {}{fee}",
                        p.name,
                        "portal",
                        Timestamp(p.added_at)
                    );
                }
            }
        }
        PartnerCmd::AddPortal {
            name,
            transaction_fee,
            currency,
        } => {
            let fee = match (transaction_fee, currency) {
                (Some(a), Some(c)) => Some((
                    a,
                    Currency::parse(&c).map_err(|e| Failure::Usage(e.to_string()))?,
                )),
                _ => None,
            };
            let p = inst.add_portal_company(&name, fee).await?;
            match (p.transaction_fee, p.currency) {
                (Some(a), Some(c)) => println!(
                    "portal company {name} registered; each acceptance records a transaction fee of {a} {c}"
                ),
                _ => println!("portal company {name} registered, no transaction fee"),
            }
        }
    }
    Ok(exit::OK)
}

/// Builds terms from the flags, over `base` (the current terms) for counter and revise.
fn terms_from(a: TermsArgs, base: Option<&TermsView>) -> Result<Terms> {
    let rate = match (a.hourly_rate, a.flat_rate, base) {
        (Some(r), None, _) => Rate::Hourly(r),
        (None, Some(f), _) => Rate::Flat(f),
        (Some(_), Some(_), _) => {
            return Err(Failure::Usage("give --hourly-rate or --flat-rate, not both".into()).into())
        }
        (None, None, Some(b)) if b.rate_type == "flat" => Rate::Flat(b.rate),
        (None, None, Some(b)) => Rate::Hourly(b.rate),
        (None, None, None) => {
            return Err(Failure::Usage("give --hourly-rate R or --flat-rate F".into()).into())
        }
    };
    let currency = match (&a.currency, base) {
        (Some(c), _) => c.clone(),
        (None, Some(b)) => b.currency.clone(),
        (None, None) => "USD".into(),
    };
    let currency = Currency::parse(&currency).map_err(|e| Failure::Usage(e.to_string()))?;
    let respond_by = match (&a.respond_within, base) {
        (Some(d), _) => Some(Timestamp(now_ms() + parse_duration_ms(d)?)),
        (None, Some(b)) => b.respond_by_ms.map(Timestamp),
        (None, None) => None,
    };
    Ok(Terms {
        rate,
        currency,
        authorized_hours: a.authorized_hours.or(base.and_then(|b| b.authorized_hours)),
        authorized_charge: a
            .authorized_charge
            .or(base.and_then(|b| b.authorized_charge)),
        respond_by,
        rounding: match (&a.rounding, base) {
            (Some(r), _) => Rounding::parse(r).map_err(|e| Failure::Usage(e.to_string()))?,
            (None, Some(b)) => Rounding::parse(&b.rounding).unwrap_or_default(),
            (None, None) => Rounding::default(),
        },
        instructions: a
            .instructions
            .or_else(|| base.map(|b| b.instructions.clone()))
            .unwrap_or_default(),
    })
}

pub async fn outsource(inst: &Instance, c: OutsourceCmd) -> Result<u8> {
    let (id, cmd) = match c {
        OutsourceCmd::Send { id, to, terms } => {
            let partner = InstanceId::parse(&to)?;
            let terms = terms_from(terms, None)?;
            (
                id,
                OutsourceCommand::Send {
                    link: LinkId(Ulid::new()),
                    partner,
                    terms,
                },
            )
        }
        OutsourceCmd::Counter { id, terms } => {
            let (_, v) = inst.resolve(&id).await?;
            let base = v.outsource.as_ref().and_then(|o| o.terms.clone());
            (
                id,
                OutsourceCommand::Counter {
                    terms: terms_from(terms, base.as_ref())?,
                },
            )
        }
        OutsourceCmd::Revise { id, terms } => {
            let (_, v) = inst.resolve(&id).await?;
            let base = v.outsource.as_ref().and_then(|o| o.terms.clone());
            (
                id,
                OutsourceCommand::Revise {
                    terms: terms_from(terms, base.as_ref())?,
                },
            )
        }
        OutsourceCmd::Accept {
            id,
            map_organization,
        } => {
            // Without --map-organization, the organization given when joining the lead.
            let organization = match map_organization {
                Some(o) => Some(o),
                None => {
                    let (_, v) = inst.resolve(&id).await?;
                    match v.outsource.as_ref() {
                        Some(o) => inst
                            .store
                            .get_partner(&o.lead)
                            .await?
                            .and_then(|p| p.organization),
                        None => None,
                    }
                }
            };
            (id, OutsourceCommand::Accept { organization })
        }
        OutsourceCmd::Decline { id, reason } => (id, OutsourceCommand::Decline { reason }),
        OutsourceCmd::Cancel { id } => (id, OutsourceCommand::Cancel),
        OutsourceCmd::Complete { id } => (id, OutsourceCommand::Complete),
        OutsourceCmd::Approve { id } => (id, OutsourceCommand::Approve),
        OutsourceCmd::Reject { id, reason } => (id, OutsourceCommand::Reject { reason }),
        OutsourceCmd::ForceComplete { id } => (id, OutsourceCommand::ForceComplete),
    };
    let (tid, _) = inst.resolve(&id).await?;
    inst.execute(tid, Command::Outsource(cmd)).await?;
    let (_, v) = inst.resolve(&tid.to_string()).await?;
    let o = v.outsource.as_ref();
    println!(
        "{tid} {} {}",
        o.map_or("-", |o| o.status.as_str()),
        o.map_or(String::new(), |o| format!(
            "({} {})",
            if o.role == "lead" { "partner" } else { "lead" },
            o.counterparty
        ))
    );
    Ok(exit::OK)
}

pub async fn sync(inst: Instance, c: SyncCmd) -> Result<u8> {
    match c {
        SyncCmd::Run { once } => {
            let url = inst.nats_url().ok_or_else(|| {
                Failure::Usage(
                    "no NATS server configured: use `init --nats URL`, a nats entry in ticketsync.toml, or TICKETSYNC_NATS_URL".into(),
                )
            })?;
            let shutdown = tokio_util::sync::CancellationToken::new();
            let signal = shutdown.clone();
            // Registered before anything else, so an early SIGTERM is a clean stop too.
            let waiter = signal_waiter()?;
            tokio::spawn(async move {
                waiter.await;
                tracing::info!("shutting down: finishing what is in flight");
                signal.cancel();
            });
            let inst = Arc::new(inst);
            let stats =
                ticketsync_sync::run(inst, &url, ticketsync_sync::RunOptions { once }, shutdown)
                    .await?;
            eprintln!(
                "sync: published {} entries, applied {}, quarantined {}, duplicates {}, resend requests {}",
                stats.published_entries, stats.applied_entries, stats.quarantined, stats.duplicates, stats.resend_requests
            );
        }
        SyncCmd::Status { json } => {
            let mut rows = vec![];
            let quarantine = inst.store.list_quarantine().await?;
            for p in inst.store.list_partners().await? {
                let out = inst.store.outbox_head(&p.name).await?;
                let acked = inst.store.outbox_acked(&p.name).await?;
                let inn = inst.store.inbound_head(&p.name).await?;
                let q = quarantine
                    .iter()
                    .filter(|r| r.partner == p.name)
                    .collect::<Vec<_>>();
                rows.push(json!({
                    "partner": p.name,
                    "state": p.state.as_str(),
                    "outbound": { "seq": out.seq, "hash": hex::encode(out.hash), "acked": acked, "lag": out.seq - acked.min(out.seq) },
                    "inbound": { "seq": inn.seq, "hash": hex::encode(inn.hash) },
                    "quarantined": q.len(),
                    "last_error": inst.store.get_meta(&format!("sync.last_error.{}", p.name)).await?,
                    "last_quarantine": q.last().map(|r| format!("{} {}: {}", Timestamp(r.received_at), r.kind, r.detail)),
                }));
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<20}  {:<8}  {:>8}  {:>6}  {:>8}  {:>5}  OUT HEAD / IN HEAD",
                    "PARTNER", "STATE", "OUT SEQ", "LAG", "IN SEQ", "QUAR"
                );
                for r in rows {
                    println!(
                        "{:<20}  {:<8}  {:>8}  {:>6}  {:>8}  {:>5}  {} / {}",
                        r["partner"].as_str().unwrap_or(""),
                        r["state"].as_str().unwrap_or(""),
                        r["outbound"]["seq"].to_string(),
                        r["outbound"]["lag"].to_string(),
                        r["inbound"]["seq"].to_string(),
                        r["quarantined"].to_string(),
                        &r["outbound"]["hash"].as_str().unwrap_or("")[..16],
                        &r["inbound"]["hash"].as_str().unwrap_or("")[..16],
                    );
                    if let Some(e) = r["last_error"].as_str() {
                        println!("{:<20}  last error: {e}", "");
                    }
                }
            }
        }
        SyncCmd::Quarantine { json } => {
            let q = inst.store.list_quarantine().await?;
            if json {
                let rows: Vec<_> = q
                    .iter()
                    .map(|r| {
                        json!({
                            "id": r.id, "partner": r.partner, "seq": r.seq, "event_id": r.event_id,
                            "kind": r.kind, "detail": r.detail, "received_at": Timestamp(r.received_at).to_string(),
                            "bytes": r.body.as_ref().map_or(0, Vec::len),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for r in q {
                    println!(
                        "{:>5}  {}  {:<12}  seq {:<6}  {:<24}  {}",
                        r.id,
                        Timestamp(r.received_at),
                        r.partner,
                        r.seq.map_or("-".into(), |s| s.to_string()),
                        r.kind,
                        r.detail
                    );
                }
            }
        }
    }
    Ok(exit::OK)
}

/// Registers for SIGTERM and Ctrl-C now; the returned future completes on either.
fn signal_waiter() -> Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async move {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

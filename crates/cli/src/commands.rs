//! What each subcommand does: parse its arguments into domain commands or store calls,
//! and print the result.

use std::io::{IsTerminal, Write};

use anyhow::{Context as _, Result};
use rust_decimal::Decimal;
use serde_json::json;
use ticketsync_domain::command::{ChargePatch, TimePatch};
use ticketsync_domain::{Attachment, Charge, Command, ItemId, ItemKind, TicketId, TimeEntry};
use ticketsync_projections::{
    rebuild, reclaim, ticket_as_of, TicketProjection, TicketView, TICKETS,
};
use ticketsync_store::MAX_READ_BATCH;
use ticketsync_store::{verify_channels, verify_log};
use ticketsync_wire::ReplayLine;
use ulid::Ulid;

use crate::cli::{AttachCmd, ChargeCmd, Cli, Cmd, NoteCmd, TicketCmd, TimeCmd, TimeFields};
use crate::exit::{self, Failure};
use crate::render;
use ticketsync_app::Instance;

pub async fn run(cli: Cli) -> Result<u8> {
    let dir = cli.data_dir.clone();
    if let Cmd::Init {
        instance,
        database,
        nats,
    } = &cli.command
    {
        let cfg = Instance::init(&dir, instance, database.clone(), nats.clone()).await?;
        println!(
            "initialized instance {instance} in {}",
            cfg.parent().unwrap_or(&dir).display()
        );
        return Ok(exit::OK);
    }
    let mut inst = Instance::open(&dir, cli.user.clone()).await?;
    if let Some(company) = &cli.portal {
        inst.act_for_portal(company).await?;
    }
    let inst = inst;
    match cli.command {
        Cmd::Init { .. } => Ok(exit::OK),
        Cmd::Ticket(c) => ticket(&inst, c).await,
        Cmd::Note(c) => note(&inst, c).await,
        Cmd::Time(c) => time(&inst, c).await,
        Cmd::Charge(c) => charge(&inst, c).await,
        Cmd::Attach(c) => attach(&inst, c).await,
        Cmd::Replay {
            ticket,
            from,
            to,
            json,
        } => replay(&inst, ticket, from, to, json).await,
        Cmd::Verify { json } => verify(&inst, json).await,
        Cmd::Rebuild { projection, json } => rebuild_cmd(&inst, projection, json).await,
        Cmd::Partner(c) => crate::partners::partner(&inst, c).await,
        Cmd::Outsource(c) => crate::partners::outsource(&inst, c).await,
        Cmd::Sync(c) => crate::partners::sync(inst, c).await,
        Cmd::Invoice(c) => crate::billing::invoice(&inst, c).await,
        Cmd::Report(c) => crate::billing::report(&inst, c).await,
    }
}

fn item_id(s: &str) -> Result<ItemId> {
    Ok(s.parse::<ItemId>()?)
}

async fn ticket(inst: &Instance, c: TicketCmd) -> Result<u8> {
    match c {
        TicketCmd::Create {
            title,
            description,
            customer,
        } => {
            let id = TicketId(Ulid::new());
            inst.execute(
                id,
                Command::CreateTicket {
                    title,
                    description,
                    customer,
                },
            )
            .await?;
            println!("{id}");
        }
        TicketCmd::Show {
            id,
            json,
            as_of,
            work_order,
            html,
        } => {
            let (tid, current) = inst.resolve(&id).await?;
            let view = match as_of {
                None => current,
                Some(a) => {
                    let pos = position_of(inst, &a).await?;
                    ticket_as_of(inst.store.as_ref(), tid.0, pos, current.number)
                        .await?
                        .ok_or_else(|| {
                            Failure::NotFound(format!(
                                "ticket {tid} did not exist yet at log position {pos}"
                            ))
                        })?
                }
            };
            if work_order {
                if html {
                    print!("{}", render::work_order_html(&view));
                } else {
                    print!("{}", render::ticket(&view));
                }
            } else if json {
                println!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                print!("{}", render::ticket(&view));
            }
        }
        TicketCmd::List {
            json,
            status,
            search,
        } => {
            inst.refresh().await?;
            let wanted_status = match &status {
                None => None,
                Some(s) => Some(
                    inst.policy
                        .statuses
                        .find(s)
                        .ok_or_else(|| {
                            Failure::Usage(format!(
                                "unknown status {s:?}; configured: {}",
                                inst.policy.statuses.names().join(", ")
                            ))
                        })?
                        .to_string(),
                ),
            };
            let needle = search.map(|s| s.to_lowercase());
            let list: Vec<TicketView> = TicketProjection::list_heads(inst.store.as_ref())
                .await?
                .into_iter()
                .filter(|t| wanted_status.as_ref().is_none_or(|s| &t.status == s))
                .filter(|t| needle.as_ref().is_none_or(|n| matches_search(t, n)))
                .collect();
            if json {
                let rows: Vec<_> = list.iter().map(render::list_row_json).collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!("{}", render::list(&list));
            }
        }
        TicketCmd::Status { id, status } => {
            let (tid, _) = inst.resolve(&id).await?;
            inst.execute(tid, Command::ChangeStatus { status }).await?;
            let (_, v) = inst.resolve(&tid.to_string()).await?;
            println!("{tid} {}", v.status);
        }
    }
    Ok(exit::OK)
}

fn matches_search(t: &TicketView, needle: &str) -> bool {
    [Some(&t.title), Some(&t.description), t.customer.as_ref()]
        .into_iter()
        .flatten()
        .any(|s| s.to_lowercase().contains(needle))
}

/// Runs an add command with a fresh item id and prints the id.
async fn add_item(inst: &Instance, id: &str, make: impl FnOnce(ItemId) -> Command) -> Result<u8> {
    let (tid, _) = inst.resolve(id).await?;
    let item = ItemId(Ulid::new());
    inst.execute(tid, make(item)).await?;
    println!("{item}");
    Ok(exit::OK)
}

/// Runs an edit or delete and reports whether anything changed.
async fn change_item(inst: &Instance, id: &str, cmd: Command) -> Result<u8> {
    let (tid, _) = inst.resolve(id).await?;
    let written = inst.execute(tid, cmd).await?;
    if written.is_empty() {
        println!("unchanged");
    } else {
        println!("ok");
    }
    Ok(exit::OK)
}

async fn note(inst: &Instance, c: NoteCmd) -> Result<u8> {
    match c {
        NoteCmd::Add { id, text, internal } => {
            add_item(inst, &id, |item| Command::AddNote {
                item,
                text,
                internal,
            })
            .await
        }
        NoteCmd::Edit {
            id,
            item,
            text,
            internal,
        } => {
            if text.is_none() && internal.is_none() {
                return Err(
                    Failure::Usage("note edit: give --text and/or --internal".into()).into(),
                );
            }
            change_item(
                inst,
                &id,
                Command::EditNote {
                    item: item_id(&item)?,
                    text,
                    internal,
                },
            )
            .await
        }
        NoteCmd::Delete { id, item } => {
            change_item(
                inst,
                &id,
                Command::DeleteItem {
                    item: item_id(&item)?,
                    kind: ItemKind::Note,
                },
            )
            .await
        }
    }
}

fn today() -> chrono::NaiveDate {
    chrono::Utc::now().date_naive()
}

async fn time(inst: &Instance, c: TimeCmd) -> Result<u8> {
    match c {
        TimeCmd::Add {
            id,
            fields,
            non_billable,
        } => {
            let TimeFields {
                hours,
                offset,
                summary,
                resource,
                role,
                date,
            } = fields;
            let hours =
                hours.ok_or_else(|| Failure::Usage("time add: --hours is required".into()))?;
            let entry = TimeEntry {
                hours,
                offset_hours: offset.unwrap_or(Decimal::ZERO),
                resource: resource.unwrap_or_else(|| inst.actor.user.clone()),
                role,
                summary: summary.unwrap_or_default(),
                date: date.unwrap_or_else(today),
                billable: !non_billable,
            };
            add_item(inst, &id, |item| Command::AddTime { item, entry }).await
        }
        TimeCmd::Edit {
            id,
            item,
            fields,
            billable,
        } => {
            let TimeFields {
                hours,
                offset,
                summary,
                resource,
                role,
                date,
            } = fields;
            let patch = TimePatch {
                hours,
                offset_hours: offset,
                resource,
                role: role.map(|r| if r.trim().is_empty() { None } else { Some(r) }),
                summary,
                date,
                billable,
            };
            if patch == TimePatch::default() {
                return Err(
                    Failure::Usage("time edit: give at least one field to change".into()).into(),
                );
            }
            change_item(
                inst,
                &id,
                Command::EditTime {
                    item: item_id(&item)?,
                    patch,
                },
            )
            .await
        }
        TimeCmd::Delete { id, item } => {
            change_item(
                inst,
                &id,
                Command::DeleteItem {
                    item: item_id(&item)?,
                    kind: ItemKind::Time,
                },
            )
            .await
        }
    }
}

async fn charge(inst: &Instance, c: ChargeCmd) -> Result<u8> {
    match c {
        ChargeCmd::Add {
            id,
            description,
            quantity,
            unit_cost,
            unit_price,
            non_billable,
        } => {
            let charge = Charge {
                description,
                quantity,
                unit_cost,
                unit_price: unit_price.unwrap_or(unit_cost),
                billable: !non_billable,
            };
            add_item(inst, &id, |item| Command::AddCharge { item, charge }).await
        }
        ChargeCmd::Edit {
            id,
            item,
            description,
            quantity,
            unit_cost,
            unit_price,
            billable,
        } => {
            let patch = ChargePatch {
                description,
                quantity,
                unit_cost,
                unit_price,
                billable,
            };
            if patch == ChargePatch::default() {
                return Err(Failure::Usage(
                    "charge edit: give at least one field to change".into(),
                )
                .into());
            }
            change_item(
                inst,
                &id,
                Command::EditCharge {
                    item: item_id(&item)?,
                    patch,
                },
            )
            .await
        }
        ChargeCmd::Delete { id, item } => {
            change_item(
                inst,
                &id,
                Command::DeleteItem {
                    item: item_id(&item)?,
                    kind: ItemKind::Charge,
                },
            )
            .await
        }
    }
}

async fn attach(inst: &Instance, c: AttachCmd) -> Result<u8> {
    match c {
        AttachCmd::Add { id, file, internal } => {
            let (tid, _) = inst.resolve(&id).await?;
            let filename = file
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| {
                    Failure::Usage(format!("{} has no usable file name", file.display()))
                })?
                .to_string();
            let (sha256, size) = inst.store_blob(&file)?;
            let attachment = Attachment {
                sha256,
                media_type: render::media_type(&filename).into(),
                filename,
                size,
                internal,
            };
            let item = ItemId(Ulid::new());
            inst.execute(tid, Command::AddAttachment { item, attachment })
                .await?;
            println!("{item}");
            Ok(exit::OK)
        }
        AttachCmd::Delete { id, item } => {
            change_item(
                inst,
                &id,
                Command::DeleteItem {
                    item: item_id(&item)?,
                    kind: ItemKind::Attachment,
                },
            )
            .await
        }
    }
}

async fn replay(
    inst: &Instance,
    ticket: Option<String>,
    from: u64,
    to: Option<u64>,
    json: bool,
) -> Result<u8> {
    if let Some(to) = to {
        if to < from {
            return Err(Failure::Usage(format!("--to {to} is before --from {from}")).into());
        }
    }
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    let mut print = |e: &ticketsync_wire::LogEntry| -> Result<()> {
        if json {
            let line = ReplayLine::from_entry(e)
                .with_context(|| format!("log position {}", e.position))?;
            writeln!(out, "{}", serde_json::to_string(&line)?)?;
        } else {
            writeln!(out, "{}", render::replay_line(e)?)?;
        }
        Ok(())
    };
    if let Some(t) = ticket {
        let (tid, _) = inst.resolve(&t).await?;
        for e in inst.store.read_stream(tid.0, to).await? {
            if e.position >= from {
                print(&e)?;
            }
        }
    } else {
        let mut after = from.saturating_sub(1);
        'outer: loop {
            let batch = inst.store.read_log(after, MAX_READ_BATCH).await?;
            if batch.is_empty() {
                break;
            }
            for e in &batch {
                if to.is_some_and(|t| e.position > t) {
                    break 'outer;
                }
                print(e)?;
                after = e.position;
            }
        }
    }
    out.flush()?;
    Ok(exit::OK)
}

async fn verify(inst: &Instance, json: bool) -> Result<u8> {
    let bar = progress_bar(inst.store.head().await?.position, "verify");
    let report = verify_log(inst.store.as_ref(), &mut |n| bar.set_position(n)).await?;
    bar.finish_and_clear();
    let channels = verify_channels(inst.store.as_ref(), inst.name().as_str()).await?;
    let channels_ok = channels.iter().all(|c| c.problem.is_none());
    // Invoices are checked only on an intact log that this build can read (a damaged
    // one cannot be billed from; a newer one is exit 7 for every other command, but the
    // chain is still worth checking): otherwise say why they were not checked.
    let (invoices_checked, mismatches, not_checked) = if let Some(p) = &report.problem {
        (
            0,
            vec![],
            Some(format!("the log is damaged at position {}", p.position)),
        )
    } else {
        match crate::billing::check_invoices(inst).await {
            Ok((n, bad)) => (n, bad, None),
            Err(e) => (0, vec![], Some(format!("{e:#}"))),
        }
    };
    let ok = report.problem.is_none() && channels_ok && mismatches.is_empty();
    if json {
        let v = json!({
            "ok": ok,
            "checked": report.checked,
            "head": { "position": report.last_good.position, "hash": hex::encode(report.last_good.hash) },
            "problem": report.problem.as_ref().map(|p| json!({
                "position": p.position, "kind": p.kind, "detail": p.detail,
            })),
            "channels": channels.iter().map(|c| json!({
                "partner": c.partner, "checked": c.checked,
                "head": { "seq": c.head.seq, "hash": hex::encode(c.head.hash) },
                "problem": c.problem.as_ref().map(|(seq, d)| json!({ "seq": seq, "detail": d })),
            })).collect::<Vec<_>>(),
            "invoices": {
                "checked": invoices_checked,
                "not_checked": not_checked,
                "mismatches": mismatches.iter().map(|m| json!({
                    "number": m.number, "ticket": m.ticket, "detail": m.detail,
                })).collect::<Vec<_>>(),
            },
        });
        println!("{v}");
    } else {
        if let Some(p) = &report.problem {
            println!(
                "FAILED at position {} ({}): {}",
                p.position, p.kind, p.detail
            );
        } else {
            println!(
                "ok: {} entries, chain intact, head {} {}",
                report.checked,
                report.last_good.position,
                hex::encode(report.last_good.hash)
            );
        }
        for c in &channels {
            match &c.problem {
                Some((seq, d)) => println!("FAILED channel to {} at seq {seq}: {d}", c.partner),
                None => println!(
                    "ok: channel to {}: {} entries, head {} {}",
                    c.partner,
                    c.checked,
                    c.head.seq,
                    hex::encode(c.head.hash)
                ),
            }
        }
        for m in &mismatches {
            println!(
                "FAILED invoice {} (ticket #{}): the partner's invoice differs from the bill computed here: {}",
                m.number, m.ticket, m.detail
            );
        }
        if invoices_checked > 0 && mismatches.is_empty() {
            println!("ok: {invoices_checked} partner invoices agree with the bills computed here");
        }
        if let (None, Some(why)) = (&report.problem, &not_checked) {
            println!("invoices not checked: {why}");
        }
    }
    Ok(if !ok { exit::VERIFY_FAILED } else { exit::OK })
}

async fn rebuild_cmd(inst: &Instance, projection: Option<String>, json: bool) -> Result<u8> {
    let name = projection.unwrap_or_else(|| TICKETS.to_string());
    if name != TICKETS {
        return Err(
            Failure::Usage(format!("unknown projection {name:?}; known: {TICKETS}")).into(),
        );
    }
    let started = std::time::Instant::now();
    let bar = progress_bar(inst.store.head().await?.position, "rebuild tickets");
    let r = rebuild(inst.store.as_ref(), &TicketProjection, &mut |p| {
        bar.set_position(p)
    })
    .await?;
    bar.finish_and_clear();
    // The replaced projection's rows, now unreadable: deleted before returning, so the
    // database does not keep a second copy of the projection.
    reclaim(inst.store.as_ref()).await?;
    let same = r.live_digest == r.rebuilt_digest;
    if json {
        println!(
            "{}",
            json!({
                "projection": name, "position": r.position,
                "digest": hex::encode(r.rebuilt_digest), "live_digest": hex::encode(r.live_digest),
                "identical": same, "seconds": started.elapsed().as_secs_f64(),
            })
        );
    } else {
        println!(
            "{name}: rebuilt to position {} digest {}",
            r.position,
            hex::encode(r.rebuilt_digest)
        );
        if same {
            println!("{name}: identical to the live projection");
        } else {
            eprintln!(
                "warning: {name}: the live projection differed (digest {}); it has been replaced by the rebuilt one",
                hex::encode(r.live_digest)
            );
        }
    }
    Ok(exit::OK)
}

/// A progress bar on a terminal; hidden otherwise, so scripts and logs stay clean.
fn progress_bar(len: u64, what: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({per_sec}, {eta})")
    {
        bar.set_style(style);
    }
    bar.set_message(what.to_string());
    bar
}

/// A log position from `--as-of`: a position number, or an RFC 3339 time (the last
/// position recorded at or before it).
pub async fn position_of(inst: &Instance, a: &str) -> Result<u64> {
    if let Ok(p) = a.trim().parse::<u64>() {
        return Ok(p);
    }
    let t = chrono::DateTime::parse_from_rfc3339(a.trim())
        .map_err(|_| {
            Failure::Usage(format!(
                "--as-of {a:?} is neither a log position nor an RFC 3339 time (2026-11-22T14:00:00Z)"
            ))
        })?
        .timestamp_millis();
    let mut last = 0;
    loop {
        let batch = inst.store.read_log(last, MAX_READ_BATCH).await?;
        let Some(end) = batch.last().map(|e| e.position) else {
            return Ok(last);
        };
        for e in &batch {
            if e.recorded_at > t {
                return Ok(last);
            }
            last = e.position;
        }
        last = end;
    }
}

//! The invoice and report subcommands: bills computed from the log by the domain's
//! billing rules, invoice numbers from the ticket projection, text / JSON / HTML output.

use std::fmt::Write as _;

use anyhow::Result;
use serde_json::{json, Value};
use ticketsync_app::{now_ms, Instance};
use ticketsync_domain::billing::bill;
use ticketsync_domain::{LinkId, TicketId};
use ticketsync_projections::billing::{bill_view, BillView};
use ticketsync_projections::{StatedInvoice, TicketProjection, TicketView};

use crate::cli::{InvoiceCmd, ReportCmd};
use crate::exit::{self, Failure};

/// One invoice (issued here as the partner, or received here as the lead).
struct Invoice {
    number: Option<u64>,
    ticket: TicketView,
    role: String,
    issuer: String,
    bill_to: String,
    organization: Option<String>,
    issued_at: Option<String>,
    status: String,
    bill: BillView,
    /// What the partner stated in its `invoice_issued` event, if it has arrived.
    stated: Option<StatedInvoice>,
}

impl Invoice {
    /// Whether the partner's stated invoice matches the bill computed here (`None`
    /// until the partner's statement is in this instance's log).
    fn agrees(&self) -> Option<bool> {
        self.stated.as_ref().map(|s| {
            s.lines_digest == self.bill.digest
                && s.subtotal == self.bill.subtotal
                && s.currency == self.bill.currency
                && s.terms_version == self.bill.terms_version
                && s.lines as usize == self.bill.lines.len()
        })
    }
}

fn invoice_json(i: &Invoice) -> Value {
    json!({
        "number": i.number.map(|n| format_number(&i.issuer, n)),
        "role": i.role,
        "issuer": i.issuer,
        "bill_to": { "instance": i.bill_to, "organization": i.organization },
        "ticket": { "id": i.ticket.id, "number": i.ticket.number, "title": i.ticket.title, "customer": i.ticket.customer },
        "issued_at": i.issued_at,
        "outsource_status": i.status,
        "terms_version": i.bill.terms_version,
        "currency": i.bill.currency,
        "lines": i.bill.lines,
        "subtotal": i.bill.subtotal,
        "total": i.bill.total,
        "billable_hours": i.bill.billable_hours,
        "authorized_hours": i.bill.authorized_hours,
        "authorized_charge": i.bill.authorized_charge,
        "over_authorized_hours": i.bill.over_authorized_hours,
        "over_authorized_charge": i.bill.over_authorized_charge,
        "digest": i.bill.digest,
        "stated": i.stated.as_ref().map(|s| json!({
            "lines_digest": s.lines_digest, "subtotal": s.subtotal, "currency": s.currency,
            "terms_version": s.terms_version, "lines": s.lines, "position": s.position,
        })),
        "agrees": i.agrees(),
    })
}

/// `BOLT-000042`: the issuer's name and its own sequence.
fn format_number(issuer: &str, n: u64) -> String {
    format!("{}-{n:06}", issuer.to_uppercase())
}

/// The bill of a ticket's link, computed from the log up to `as_of`.
async fn invoice_for(
    inst: &Instance,
    view: TicketView,
    link: Option<&str>,
    as_of: Option<u64>,
) -> Result<Invoice> {
    let id: TicketId = view.id.parse()?;
    let (state, _) = inst.load_at(id, as_of).await?;
    let t = state
        .ok_or_else(|| Failure::NotFound(format!("ticket {id} did not exist yet at that point")))?;
    let l = match link {
        Some(l) => t.link(l.parse::<LinkId>()?),
        None => t.current_link(),
    }
    .ok_or_else(|| Failure::NotFound(format!("ticket {id} was never outsourced")))?;
    let b = bill(&t, l.id).ok_or_else(|| {
        Failure::Refused(format!(
            "outsource status is {}: nothing to bill before acceptance",
            l.status
        ))
    })?;
    let role = if l.lead == *inst.name() {
        "lead"
    } else {
        "partner"
    };
    let record = view.invoices.iter().find(|i| i.link_id == l.id.to_string());
    let number = record.map(|i| i.number);
    let issued_at = record.map(|i| i.issued_at.clone());
    // As of an earlier position the statement may not have existed yet.
    let stated = record
        .and_then(|i| i.stated.clone())
        .filter(|s| as_of.is_none_or(|p| s.position <= p));
    Ok(Invoice {
        number,
        role: role.into(),
        issuer: l.partner.to_string(),
        bill_to: l.lead.to_string(),
        organization: l.organization.clone(),
        issued_at,
        status: l.status.name().into(),
        bill: bill_view(&b),
        stated,
        ticket: view,
    })
}

/// Every invoice this instance issued or received (links that completed after acceptance).
async fn all_invoices(inst: &Instance) -> Result<Vec<Invoice>> {
    inst.refresh().await?;
    let mut out = vec![];
    for t in TicketProjection::list_heads(inst.store.as_ref()).await? {
        for l in t.links.clone() {
            let completed = l.transitions.iter().any(|x| {
                x.effective
                    && matches!(
                        x.mv.as_str(),
                        "approve" | "force-complete" | "complete-by-status"
                    )
            });
            let accepted = l
                .transitions
                .iter()
                .any(|x| x.effective && x.mv == "accept");
            if completed && accepted {
                out.push(invoice_for(inst, t.clone(), Some(&l.id), None).await?);
            }
        }
    }
    out.sort_by_key(|i| (i.number.is_none(), i.number, i.ticket.number));
    Ok(out)
}

pub async fn invoice(inst: &Instance, c: InvoiceCmd) -> Result<u8> {
    match c {
        InvoiceCmd::List { json } => {
            let all = all_invoices(inst).await?;
            if json {
                let rows: Vec<Value> = all.iter().map(invoice_json).collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<14}  {:<8}  {:>6}  {:<30}  {:>12}  {:<4}  ISSUER -> BILL TO",
                    "NUMBER", "ROLE", "TICKET", "TITLE", "TOTAL", "CUR"
                );
                for i in &all {
                    println!(
                        "{:<14}  {:<8}  {:>6}  {:<30}  {:>12}  {:<4}  {} -> {}",
                        i.number
                            .map_or("(received)".into(), |n| format_number(&i.issuer, n)),
                        i.role,
                        format!("#{}", i.ticket.number),
                        i.ticket.title.chars().take(30).collect::<String>(),
                        i.bill.total.to_string(),
                        i.bill.currency,
                        i.issuer,
                        i.bill_to
                    );
                }
            }
        }
        InvoiceCmd::Show {
            id,
            json,
            html,
            as_of,
        } => {
            let as_of = match as_of {
                None => None,
                Some(a) => Some(crate::commands::position_of(inst, &a).await?),
            };
            let inv = find_invoice(inst, &id, as_of).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&invoice_json(&inv))?);
            } else if html {
                print!("{}", invoice_html(&inv));
            } else {
                print!("{}", invoice_text(&inv));
            }
        }
    }
    Ok(exit::OK)
}

/// Finds an invoice by number (`BOLT-000001` or `1`) or by ticket (ULID or `#n`).
async fn find_invoice(inst: &Instance, id: &str, as_of: Option<u64>) -> Result<Invoice> {
    inst.refresh().await?;
    let digits = id.rsplit('-').next().unwrap_or(id);
    if id.contains('-') && digits.chars().all(|c| c.is_ascii_digit()) {
        let n: u64 = digits
            .parse()
            .map_err(|_| Failure::Usage(format!("bad invoice number {id:?}")))?;
        // The number's prefix names the issuer: numbers of different partners overlap.
        let issuer = id[..id.len() - digits.len() - 1].to_lowercase();
        for t in TicketProjection::list_heads(inst.store.as_ref()).await? {
            let found = t.invoices.iter().find(|r| {
                r.number == n
                    && t.links
                        .iter()
                        .any(|l| l.id == r.link_id && l.partner.to_lowercase() == issuer)
            });
            if let Some(r) = found.cloned() {
                return invoice_for(inst, t, Some(&r.link_id), as_of).await;
            }
        }
        return Err(Failure::NotFound(format!("invoice {id} not found")).into());
    }
    let (_, view) = inst.resolve(id).await?;
    invoice_for(inst, view, None, as_of).await
}

fn invoice_text(i: &Invoice) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "Invoice {}  from {} to {}{}",
        i.number
            .map_or("(as computed here)".into(), |n| format_number(&i.issuer, n)),
        i.issuer,
        i.bill_to,
        i.organization
            .as_ref()
            .map(|o| format!(" ({o})"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        o,
        "ticket #{} {}  {}",
        i.ticket.number, i.ticket.id, i.ticket.title
    );
    let _ = writeln!(
        o,
        "outsource status {}, terms version {}, {}",
        i.status, i.bill.terms_version, i.bill.currency
    );
    let _ = writeln!(o);
    for l in &i.bill.lines {
        let flags = match (l.over_authorized_hours, l.over_authorized_charge) {
            (true, true) => " [over hours, over charge]",
            (true, false) => " [over authorized hours]",
            (false, true) => " [over authorized charge]",
            _ => "",
        };
        let what = match l.kind.as_str() {
            "time" => format!(
                "{} h ({} h - {} h offset) x {}",
                l.billable_hours, l.hours, l.offset_hours, l.unit_price
            ),
            _ => format!("{} x {}", l.quantity, l.unit_price),
        };
        let _ = writeln!(
            o,
            "  {:<7} {:<44} {:<28} {:>12}{flags}",
            l.kind,
            l.description.chars().take(44).collect::<String>(),
            what,
            l.amount.to_string()
        );
    }
    let _ = writeln!(
        o,
        "\n  total {} {}   ({} billable hours)",
        i.bill.total, i.bill.currency, i.bill.billable_hours
    );
    let _ = writeln!(o, "  lines digest {}", i.bill.digest);
    match (&i.stated, i.agrees()) {
        (Some(_), Some(true)) => {
            let _ = writeln!(o, "  the partner's invoice agrees line for line");
        }
        (Some(s), _) => {
            let _ = writeln!(
                o,
                "  DIFFERS from the partner's invoice: {} {} in {} lines, lines digest {}",
                s.subtotal, s.currency, s.lines, s.lines_digest
            );
        }
        (None, _) => {}
    }
    o
}

/// One invoice whose partner's statement differs from the bill computed here.
pub struct InvoiceMismatch {
    pub number: String,
    pub ticket: u64,
    pub detail: String,
}

/// Checks every invoice the partner stated against the bill computed from this
/// instance's own log; returns how many were checked and those that differ.
pub async fn check_invoices(inst: &Instance) -> Result<(usize, Vec<InvoiceMismatch>)> {
    inst.refresh().await?;
    let mut checked = 0;
    let mut bad = vec![];
    for t in TicketProjection::list_heads(inst.store.as_ref()).await? {
        for r in t.invoices.iter().filter(|r| r.stated.is_some()) {
            checked += 1;
            let number = t.links.iter().find(|l| l.id == r.link_id).map_or_else(
                || r.number.to_string(),
                |l| format_number(&l.partner, r.number),
            );
            let detail = match invoice_for(inst, t.clone(), Some(&r.link_id), None).await {
                Ok(inv) => match (&inv.stated, inv.agrees()) {
                    (Some(s), Some(false)) => format!(
                        "stated {} {} in {} lines (terms version {}, lines digest {}), computed here {} {} in {} lines (terms version {}, lines digest {})",
                        s.subtotal, s.currency, s.lines, s.terms_version, s.lines_digest,
                        inv.bill.subtotal, inv.bill.currency, inv.bill.lines.len(),
                        inv.bill.terms_version, inv.bill.digest
                    ),
                    _ => continue,
                },
                Err(e) => format!("stated by the partner, but no bill can be computed here: {e:#}"),
            };
            bad.push(InvoiceMismatch {
                number,
                ticket: t.number,
                detail,
            });
        }
    }
    Ok((checked, bad))
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn invoice_html(i: &Invoice) -> String {
    let mut rows = String::new();
    for l in &i.bill.lines {
        let qty = if l.kind == "time" {
            format!("{} h", l.billable_hours)
        } else {
            l.quantity.to_string()
        };
        let flag = if l.over_authorized_hours || l.over_authorized_charge {
            " class=\"over\""
        } else {
            ""
        };
        let _ = writeln!(
            rows,
            "<tr{flag}><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(&l.kind),
            esc(&l.description),
            esc(&qty),
            l.unit_price,
            l.amount
        );
    }
    let number = i
        .number
        .map_or("(not yet numbered)".into(), |n| format_number(&i.issuer, n));
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Invoice {number}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2.5cm; color: #111; }}
h1 {{ font-size: 22px; margin: 0 0 4px; }} .muted {{ color: #555; }}
table {{ width: 100%; border-collapse: collapse; margin-top: 24px; }}
th, td {{ border-bottom: 1px solid #ccc; padding: 6px 4px; text-align: left; vertical-align: top; }}
td.n, th.n {{ text-align: right; white-space: nowrap; }} tr.over td {{ background: #fff3cd; }}
tfoot td {{ font-weight: bold; border-bottom: none; }}
.parties {{ display: flex; gap: 48px; margin-top: 24px; }}
@media print {{ body {{ margin: 1.5cm; }} }}
</style></head><body>
<h1>Invoice {number}</h1>
<div class="muted">Issued {issued} &middot; Terms version {tv} &middot; Currency {cur}</div>
<div class="parties">
<div><strong>From</strong><br>{issuer}</div>
<div><strong>Bill to</strong><br>{bill_to}{org}</div>
<div><strong>For</strong><br>Ticket #{tnum} {title}<br><span class="muted">{tid}</span></div>
</div>
<table>
<thead><tr><th>Type</th><th>Description</th><th class="n">Qty</th><th class="n">Unit</th><th class="n">Amount</th></tr></thead>
<tbody>
{rows}</tbody>
<tfoot><tr><td colspan="4">Total</td><td class="n">{total} {cur}</td></tr></tfoot>
</table>
<p class="muted">Billable hours {hours}{auth}. Lines digest {digest}.</p>
</body></html>
"#,
        issued = esc(i.issued_at.as_deref().unwrap_or("-")),
        tv = i.bill.terms_version,
        cur = esc(&i.bill.currency),
        issuer = esc(&i.issuer),
        bill_to = esc(&i.bill_to),
        org = i
            .organization
            .as_ref()
            .map(|o| format!("<br>{}", esc(o)))
            .unwrap_or_default(),
        tnum = i.ticket.number,
        title = esc(&i.ticket.title),
        tid = esc(&i.ticket.id),
        total = i.bill.total,
        hours = i.bill.billable_hours,
        auth = i
            .bill
            .authorized_hours
            .map(|h| format!(" of {h} authorized"))
            .unwrap_or_default(),
        digest = i.bill.digest,
    )
}

/// Tickets a report reads whole at a time: its memory holds one group of tickets (with
/// their items and history) and one row per outsourced or received ticket, not every ticket.
const REPORT_GROUP: usize = 64;

/// One `report summary` row for an outsourced or received ticket read whole.
async fn summary_row(inst: &Instance, t: &TicketView) -> Option<Value> {
    let o = t.outsource.as_ref()?;
    let inv = invoice_for(inst, t.clone(), Some(&o.link_id), None)
        .await
        .ok();
    let hours: rust_decimal::Decimal = t
        .items
        .iter()
        .filter(|i| !i.deleted && i.author.instance == o.partner)
        .filter_map(|i| match &i.body {
            ticketsync_projections::ticket::ItemBodyView::Time { hours, .. } => Some(*hours),
            _ => None,
        })
        .sum();
    Some(json!({
        "partner": o.counterparty, "role": o.role, "ticket": t.id, "number": t.number, "title": t.title,
        "outsource_status": o.status, "hours": hours,
        "billable_hours": inv.as_ref().map(|i| i.bill.billable_hours),
        "charges": inv.as_ref().map(|i| i.bill.charges),
        "amount": inv.as_ref().map(|i| i.bill.total),
        "currency": o.terms.as_ref().map(|x| x.currency.clone()),
        "authorized_hours": o.terms.as_ref().and_then(|x| x.authorized_hours),
        "authorized_charge": o.terms.as_ref().and_then(|x| x.authorized_charge),
        "over_authorized": inv.as_ref().is_some_and(|i| i.bill.over_authorized_hours || i.bill.over_authorized_charge),
        "transaction_fee": t.transaction_fees.iter().find(|f| f.link_id == o.link_id)
            .map(|f| json!({ "amount": f.amount, "currency": f.currency })),
    }))
}

/// One `report status` row for an outsourced or received ticket read whole, its age
/// counted to `now` (ms) from when the link was sent (which only the history has).
fn status_row(t: &TicketView, now: i64) -> Option<Value> {
    let o = t.outsource.as_ref()?;
    let sent = t
        .history
        .iter()
        .rev()
        .find(|h| h.event_type == "outsource_sent")
        .map(|h| h.at.clone());
    let age_ms = sent
        .as_deref()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|d| now - d.timestamp_millis());
    Some(json!({
        "direction": if o.role == "lead" { "outsourced" } else { "received" },
        "partner": o.counterparty, "ticket": t.id, "number": t.number, "title": t.title,
        "outsource_status": o.status, "sent_at": sent,
        "age_hours": age_ms.map(|a| (a as f64 / 3_600_000.0 * 10.0).round() / 10.0),
    }))
}

pub async fn report(inst: &Instance, c: ReportCmd) -> Result<u8> {
    inst.refresh().await?;
    // The heads say which tickets have a link; only those are read whole (items and
    // history, folded from their streams), a group at a time.
    let linked: Vec<TicketView> = TicketProjection::list_heads(inst.store.as_ref())
        .await?
        .into_iter()
        .filter(|t| t.outsource.is_some())
        .collect();
    let now = now_ms();
    let mut rows = vec![];
    for group in linked.chunks(REPORT_GROUP) {
        for t in TicketProjection::views(inst.store.as_ref(), group.to_vec()).await? {
            let row = match c {
                ReportCmd::Summary { .. } => summary_row(inst, &t).await,
                ReportCmd::Status { .. } => status_row(&t, now),
            };
            rows.extend(row);
        }
    }
    match c {
        ReportCmd::Summary { json } => {
            rows.sort_by(|a, b| {
                (a["partner"].as_str(), a["number"].as_u64())
                    .cmp(&(b["partner"].as_str(), b["number"].as_u64()))
            });
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<14} {:<8} {:>6}  {:<26} {:<17} {:>7} {:>9} {:>12} {:<4} {:>10}",
                    "PARTNER",
                    "ROLE",
                    "TICKET",
                    "TITLE",
                    "STATUS",
                    "HOURS",
                    "AUTH H",
                    "AMOUNT",
                    "CUR",
                    "AUTH AMT"
                );
                for r in &rows {
                    let s = |v: &Value| match v {
                        Value::Null => "-".to_string(),
                        Value::String(s) => s.clone(),
                        x => x.to_string(),
                    };
                    println!(
                        "{:<14} {:<8} {:>6}  {:<26} {:<17} {:>7} {:>9} {:>12} {:<4} {:>10}{}",
                        s(&r["partner"]),
                        s(&r["role"]),
                        format!("#{}", r["number"]),
                        s(&r["title"]).chars().take(26).collect::<String>(),
                        s(&r["outsource_status"]),
                        s(&r["hours"]),
                        s(&r["authorized_hours"]),
                        s(&r["amount"]),
                        s(&r["currency"]),
                        s(&r["authorized_charge"]),
                        if r["over_authorized"] == true {
                            "  OVER"
                        } else {
                            ""
                        }
                    );
                }
            }
        }
        ReportCmd::Status { json } => {
            rows.sort_by(|a, b| {
                (
                    a["direction"].as_str(),
                    a["outsource_status"].as_str(),
                    a["number"].as_u64(),
                )
                    .cmp(&(
                        b["direction"].as_str(),
                        b["outsource_status"].as_str(),
                        b["number"].as_u64(),
                    ))
            });
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                let mut last = (String::new(), String::new());
                for r in &rows {
                    let key = (
                        r["direction"].as_str().unwrap_or("").to_string(),
                        r["outsource_status"].as_str().unwrap_or("").to_string(),
                    );
                    if key != last {
                        let n = rows
                            .iter()
                            .filter(|x| {
                                x["direction"] == r["direction"]
                                    && x["outsource_status"] == r["outsource_status"]
                            })
                            .count();
                        println!("\n{} / {} ({n})", key.0, key.1);
                        last = key;
                    }
                    println!(
                        "  #{:<5} {:<40} {:<12} age {} h",
                        r["number"],
                        r["title"]
                            .as_str()
                            .unwrap_or("")
                            .chars()
                            .take(40)
                            .collect::<String>(),
                        r["partner"].as_str().unwrap_or(""),
                        r["age_hours"]
                    );
                }
            }
        }
    }
    Ok(exit::OK)
}

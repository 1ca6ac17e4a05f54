//! Human-readable output: ticket detail, ticket lists, replay lines, media types.

use std::fmt::Write;

use anyhow::Result;
use serde_json::json;
use ticketsync_projections::ticket::{ItemBodyView, ItemView};
use ticketsync_projections::TicketView;
use ticketsync_wire::replay::rfc3339_ms;
use ticketsync_wire::{event_data_json, LogEntry};

/// Cuts a string to `n` characters for a table cell.
fn cut(s: &str, n: usize) -> String {
    let one_line = s.replace(['\n', '\r', '\t'], " ");
    if one_line.chars().count() <= n {
        one_line
    } else {
        let mut t: String = one_line.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

pub fn ticket(t: &TicketView) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "#{} {}  {}", t.number, t.id, t.title);
    let _ = writeln!(
        o,
        "status: {}   customer: {}   created {} by {}@{}   version {}",
        t.status,
        t.customer.as_deref().unwrap_or("-"),
        t.created_at,
        t.created_by.user,
        t.created_by.instance,
        t.version
    );
    if let Some(x) = &t.outsource {
        let terms = x.terms.as_ref().map_or(String::new(), |tm| {
            let mut s = format!(
                "; terms v{}: {} {} {}",
                x.terms_version, tm.rate_type, tm.rate, tm.currency
            );
            if let Some(h) = tm.authorized_hours {
                s.push_str(&format!(", {h} h authorized"));
            }
            if let Some(rb) = &tm.respond_by {
                s.push_str(&format!(", respond by {rb}"));
            }
            s
        });
        let other = if x.role == "lead" { "partner" } else { "lead" };
        let _ = writeln!(
            o,
            "outsource: {} ({other} {}){terms}",
            x.status, x.counterparty
        );
    }
    if !t.description.is_empty() {
        let _ = writeln!(o, "\n{}", t.description);
    }
    let _ = writeln!(
        o,
        "\ntotals: {} h ({} h billable), charges cost {} price {}",
        t.totals.hours, t.totals.billable_hours, t.totals.charges_cost, t.totals.charges_price
    );
    let live: Vec<&ItemView> = t.items.iter().filter(|i| !i.deleted).collect();
    let _ = writeln!(o, "\nitems ({}):", live.len());
    for i in live {
        let _ = writeln!(o, "  {}", item_line(i, !t.links.is_empty()));
    }
    let deleted = t.items.iter().filter(|i| i.deleted).count();
    if deleted > 0 {
        let _ = writeln!(o, "  ({deleted} deleted; see --json or the history)");
    }
    let _ = writeln!(o, "\nhistory:");
    for h in &t.history {
        let _ = writeln!(
            o,
            "  {:>6}  {}  {}@{}  {}",
            h.position, h.at, h.actor.user, h.actor.instance, h.summary
        );
    }
    o
}

fn item_line(i: &ItemView, outsourced: bool) -> String {
    let mut flags = String::new();
    if i.internal {
        flags.push_str(" [internal]");
    }
    if (outsourced || i.sharing != "not shared") && !(i.sharing == "internal" && i.internal) {
        flags.push_str(&format!(" [{}]", i.sharing));
    }
    let what = match &i.body {
        ItemBodyView::Note { text } => cut(text, 60),
        ItemBodyView::Time {
            hours,
            offset_hours,
            resource,
            role,
            summary,
            date,
            billable,
        } => format!(
            "{hours} h{} {date} {resource}{}{} {}",
            if offset_hours.is_zero() {
                String::new()
            } else {
                format!(" (offset {offset_hours})")
            },
            role.as_ref().map(|r| format!(" ({r})")).unwrap_or_default(),
            if *billable { "" } else { " non-billable" },
            cut(summary, 40)
        ),
        ItemBodyView::Charge {
            description,
            quantity,
            unit_cost,
            unit_price,
            billable,
        } => format!(
            "{quantity} x {} at cost {unit_cost}, price {unit_price}{}",
            cut(description, 40),
            if *billable { "" } else { " non-billable" }
        ),
        ItemBodyView::Attachment {
            sha256,
            filename,
            size,
            media_type,
        } => {
            format!(
                "{filename} ({size} bytes, {media_type}) sha256:{}",
                &sha256[..16]
            )
        }
    };
    format!(
        "{:<10} {}  {}@{}{}  {}",
        i.kind, i.id, i.author.user, i.author.instance, flags, what
    )
}

pub fn list(ts: &[TicketView]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:>5}  {:<26}  {:<16}  {:<40}  {:<20}  UPDATED",
        "#", "ID", "STATUS", "TITLE", "CUSTOMER"
    );
    for t in ts {
        let _ = writeln!(
            o,
            "{:>5}  {:<26}  {:<16}  {:<40}  {:<20}  {}",
            t.number,
            t.id,
            cut(&t.status, 16),
            cut(&t.title, 40),
            cut(t.customer.as_deref().unwrap_or("-"), 20),
            t.updated_at
        );
    }
    o
}

pub fn list_row_json(t: &TicketView) -> serde_json::Value {
    json!({
        "id": t.id, "number": t.number, "title": t.title, "customer": t.customer,
        "status": t.status, "created_at": t.created_at, "updated_at": t.updated_at,
        "version": t.version, "totals": t.totals,
    })
}

/// `position recorded_at ticket@version type actor data`, one line.
pub fn replay_line(e: &LogEntry) -> Result<String> {
    let (_, data) = event_data_json(e.schema_version, &e.payload)?;
    Ok(format!(
        "{:>6}  {}  {}@{:<3}  {:<16}  {}@{}  {}",
        e.position,
        rfc3339_ms(e.recorded_at),
        e.stream_id,
        e.version,
        e.event_type,
        e.actor_user,
        e.actor_instance,
        data
    ))
}

/// A media type from the file name's extension; unknown ones are octet streams.
pub fn media_type(filename: &str) -> &'static str {
    let ext = filename
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "txt" | "log" => "text/plain",
        "csv" => "text/csv",
        "html" | "htm" => "text/html",
        "json" => "application/json",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "eml" => "message/rfc822",
        "doc" => "application/msword",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        _ => "application/octet-stream",
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A printable work order: the ticket, its terms and the work on it (internal items left out).
pub fn work_order_html(t: &TicketView) -> String {
    let mut rows = String::new();
    for i in t.items.iter().filter(|i| !i.deleted && !i.internal) {
        let what = match &i.body {
            ItemBodyView::Note { text } => esc(text),
            ItemBodyView::Time {
                hours,
                offset_hours,
                resource,
                summary,
                date,
                ..
            } => format!(
                "{date} &middot; {} &middot; {hours} h{} &middot; {}",
                esc(resource),
                if offset_hours.is_zero() {
                    String::new()
                } else {
                    format!(" (offset {offset_hours} h)")
                },
                esc(summary)
            ),
            ItemBodyView::Charge {
                description,
                quantity,
                ..
            } => format!("{quantity} &times; {}", esc(description)),
            ItemBodyView::Attachment { filename, size, .. } => {
                format!("{} ({size} bytes)", esc(filename))
            }
        };
        let _ = writeln!(
            rows,
            "<tr><td>{}</td><td>{}@{}</td><td>{}</td></tr>",
            esc(&i.kind),
            esc(&i.author.user),
            esc(&i.author.instance),
            what
        );
    }
    let terms = t
        .outsource
        .as_ref()
        .map(|o| {
            let tm = o.terms.as_ref().map_or(String::new(), |x| {
                format!(
                    " &middot; {} {} {}{}",
                    esc(&x.rate_type),
                    x.rate,
                    esc(&x.currency),
                    x.authorized_hours
                        .map(|h| format!(" &middot; {h} h authorized"))
                        .unwrap_or_default()
                )
            });
            let instructions = o
                .terms
                .as_ref()
                .filter(|x| !x.instructions.is_empty())
                .map(|x| {
                    format!(
                        "<p><strong>Instructions:</strong> {}</p>",
                        esc(&x.instructions)
                    )
                })
                .unwrap_or_default();
            format!(
                "<p>Outsourced by {} to {} &middot; {}{tm}</p>{instructions}",
                esc(&o.lead),
                esc(&o.partner),
                esc(&o.status)
            )
        })
        .unwrap_or_default();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Work order #{num}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2.5cm; color: #111; }}
h1 {{ font-size: 22px; margin: 0 0 4px; }} .muted {{ color: #555; }}
table {{ width: 100%; border-collapse: collapse; margin-top: 16px; }}
th, td {{ border-bottom: 1px solid #ccc; padding: 6px 4px; text-align: left; vertical-align: top; }}
.sign {{ margin-top: 48px; display: flex; gap: 64px; }} .sign div {{ border-top: 1px solid #111; width: 220px; padding-top: 4px; }}
</style></head><body>
<h1>Work order #{num}: {title}</h1>
<div class="muted">{id} &middot; customer {customer} &middot; status {status} &middot; opened {created}</div>
{terms}<p>{description}</p>
<table><thead><tr><th>Type</th><th>By</th><th>Work</th></tr></thead><tbody>
{rows}</tbody></table>
<p>Total {hours} h ({billable} h billable).</p>
<div class="sign"><div>Technician</div><div>Customer</div></div>
</body></html>
"#,
        num = t.number,
        title = esc(&t.title),
        id = esc(&t.id),
        customer = esc(t.customer.as_deref().unwrap_or("-")),
        status = esc(&t.status),
        created = esc(&t.created_at),
        description = esc(&t.description),
        hours = t.totals.hours,
        billable = t.totals.billable_hours,
    )
}

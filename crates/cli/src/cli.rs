//! The command-line grammar of `ticketsync` (clap derive): every subcommand and flag.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use rust_decimal::Decimal;

#[derive(Parser, Debug)]
#[command(
    name = "ticketsync",
    version,
    about = "Outsource service-desk tickets between instances, with a hash-chained event log."
)]
pub struct Cli {
    /// The instance's data directory (config, database, attachments).
    #[arg(
        long,
        global = true,
        env = "TICKETSYNC_DATA_DIR",
        default_value = "./ticketsync-data"
    )]
    pub data_dir: PathBuf,
    /// The user commands are recorded for (default: $USER, else "operator").
    #[arg(
        long = "as",
        global = true,
        env = "TICKETSYNC_USER",
        value_name = "USER"
    )]
    pub user: Option<String>,
    /// Work as a user of this portal company (a subcontractor without an instance of its
    /// own, registered with `partner add-portal`): commands are the partner's side.
    #[arg(long, global = true, env = "TICKETSYNC_PORTAL", value_name = "COMPANY")]
    pub portal: Option<String>,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Create a new instance in the data directory.
    Init {
        /// Short instance name: a-z, 0-9 and '-', starting with a letter.
        #[arg(long)]
        instance: String,
        /// Database URL (default: sqlite:<data-dir>/ticketsync.db).
        #[arg(long)]
        database: Option<String>,
        /// NATS server for the sync daemon (TICKETSYNC_NATS_URL overrides it).
        #[arg(long)]
        nats: Option<String>,
    },
    /// Partner instances: invite, join, list.
    #[command(subcommand)]
    Partner(PartnerCmd),
    /// The outsourcing workflow of a ticket.
    #[command(subcommand)]
    Outsource(OutsourceCmd),
    /// The sync daemon and its state.
    #[command(subcommand)]
    Sync(SyncCmd),
    /// Invoices for outsourced work (issued as the partner, received as the lead).
    #[command(subcommand)]
    Invoice(InvoiceCmd),
    /// Reports over outsourced and received tickets.
    #[command(subcommand)]
    Report(ReportCmd),
    /// Tickets.
    #[command(subcommand)]
    Ticket(TicketCmd),
    /// Notes on a ticket.
    #[command(subcommand)]
    Note(NoteCmd),
    /// Time entries on a ticket.
    #[command(subcommand)]
    Time(TimeCmd),
    /// Charges (costs) on a ticket.
    #[command(subcommand)]
    Charge(ChargeCmd),
    /// Attachments on a ticket.
    #[command(subcommand)]
    Attach(AttachCmd),
    /// Print the log (whole, one ticket, or a range) for audit.
    Replay {
        /// Only this ticket (ULID or number).
        #[arg(long)]
        ticket: Option<String>,
        /// First position to print.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Last position to print.
        #[arg(long)]
        to: Option<u64>,
        /// One JSON object per line (fields documented in docs/cli.md).
        #[arg(long)]
        json: bool,
    },
    /// Walk the hash chain and name the first bad position (exit 4 if any).
    Verify {
        #[arg(long)]
        json: bool,
    },
    /// Drop a projection and recompute it from the log; prints its digest.
    Rebuild {
        /// The projection to rebuild (default: all). Known: tickets.
        projection: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum TicketCmd {
    /// Create a ticket; prints its id.
    Create {
        #[arg(long)]
        title: String,
        #[arg(long, default_value = "")]
        description: String,
        #[arg(long)]
        customer: Option<String>,
    },
    /// Show one ticket with its items and history.
    Show {
        /// Ticket ULID or number.
        id: String,
        #[arg(long)]
        json: bool,
        /// Show the ticket as it was at this log position or time (RFC 3339).
        #[arg(long, value_name = "POSITION|TIMESTAMP")]
        as_of: Option<String>,
        /// Print the printable work order instead (with --html).
        #[arg(long)]
        work_order: bool,
        /// HTML output (with --work-order).
        #[arg(long, requires = "work_order")]
        html: bool,
    },
    /// List tickets.
    List {
        #[arg(long)]
        json: bool,
        /// Only tickets in this status.
        #[arg(long)]
        status: Option<String>,
        /// Only tickets whose title, description or customer contains this text (any case).
        #[arg(long)]
        search: Option<String>,
    },
    /// Change a ticket's status.
    Status {
        id: String,
        /// One of the configured statuses (default: New, In Progress, Waiting Customer, Complete).
        status: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum NoteCmd {
    /// Add a note; prints its item id.
    Add {
        id: String,
        #[arg(long)]
        text: String,
        /// Keep the note on this instance (never shared with partners).
        #[arg(long)]
        internal: bool,
    },
    /// Edit a note you wrote.
    Edit {
        id: String,
        item: String,
        #[arg(long)]
        text: Option<String>,
        /// Make the note internal (true) or shared (false).
        #[arg(long)]
        internal: Option<bool>,
    },
    /// Delete a note you wrote.
    Delete { id: String, item: String },
}

#[derive(Args, Debug)]
pub struct TimeFields {
    /// Hours worked, as a decimal (1.5).
    #[arg(long, allow_negative_numbers = true)]
    pub hours: Option<Decimal>,
    /// Hours deducted from what is billed.
    #[arg(long = "offset", allow_negative_numbers = true)]
    pub offset: Option<Decimal>,
    #[arg(long)]
    pub summary: Option<String>,
    /// Who did the work (default: you).
    #[arg(long)]
    pub resource: Option<String>,
    #[arg(long)]
    pub role: Option<String>,
    /// Day of the work, YYYY-MM-DD (default: today, UTC).
    #[arg(long)]
    pub date: Option<chrono::NaiveDate>,
}

#[derive(Subcommand, Debug)]
pub enum TimeCmd {
    /// Log time; prints its item id.
    Add {
        id: String,
        #[command(flatten)]
        fields: TimeFields,
        #[arg(long)]
        non_billable: bool,
    },
    /// Edit a time entry you logged.
    Edit {
        id: String,
        item: String,
        #[command(flatten)]
        fields: TimeFields,
        /// Set whether the entry is billable.
        #[arg(long)]
        billable: Option<bool>,
    },
    /// Delete a time entry you logged.
    Delete { id: String, item: String },
}

#[derive(Subcommand, Debug)]
pub enum ChargeCmd {
    /// Add a charge; prints its item id.
    Add {
        id: String,
        #[arg(long)]
        description: String,
        #[arg(long, allow_negative_numbers = true)]
        quantity: Decimal,
        #[arg(long, allow_negative_numbers = true)]
        unit_cost: Decimal,
        /// Price per unit to the customer (default: the unit cost).
        #[arg(long, allow_negative_numbers = true)]
        unit_price: Option<Decimal>,
        #[arg(long)]
        non_billable: bool,
    },
    /// Edit a charge you added.
    Edit {
        id: String,
        item: String,
        #[arg(long)]
        description: Option<String>,
        #[arg(long, allow_negative_numbers = true)]
        quantity: Option<Decimal>,
        #[arg(long, allow_negative_numbers = true)]
        unit_cost: Option<Decimal>,
        #[arg(long, allow_negative_numbers = true)]
        unit_price: Option<Decimal>,
        #[arg(long)]
        billable: Option<bool>,
    },
    /// Delete a charge you added.
    Delete { id: String, item: String },
}

#[derive(Subcommand, Debug)]
pub enum AttachCmd {
    /// Attach a file; prints its item id.
    Add {
        id: String,
        file: PathBuf,
        /// Keep the attachment on this instance (never shared with partners).
        #[arg(long)]
        internal: bool,
    },
    /// Delete an attachment you added (the stored content is kept: the log refers to it).
    Delete { id: String, item: String },
}

#[derive(Subcommand, Debug)]
pub enum PartnerCmd {
    /// Invite an instance to partner with this one; prints the code on its last line.
    Invite {
        /// The partner's instance name.
        name: String,
        /// How long the code is valid: 30m, 12h, 7d (default 7d, at most 90d).
        #[arg(long, default_value = "7d")]
        expires_in: String,
    },
    /// Join the instance that invited this one.
    Join {
        code: String,
        /// This instance's organization (billing account) the lead maps to.
        #[arg(long)]
        map_organization: Option<String>,
    },
    /// List partners (instances and portal companies).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Register a portal company: a subcontractor without an instance of its own, whose
    /// users work in this instance with `--portal NAME`.
    AddPortal {
        name: String,
        /// Recorded for this instance each time the company accepts a ticket.
        #[arg(long, requires = "currency", allow_negative_numbers = true)]
        transaction_fee: Option<Decimal>,
        /// ISO 4217 currency of the fee.
        #[arg(long, requires = "transaction_fee")]
        currency: Option<String>,
    },
}

#[derive(Args, Debug, Default)]
pub struct TermsArgs {
    /// Price per billable hour.
    #[arg(long, allow_negative_numbers = true, conflicts_with = "flat_rate")]
    pub hourly_rate: Option<Decimal>,
    /// One price for the whole job.
    #[arg(long, allow_negative_numbers = true)]
    pub flat_rate: Option<Decimal>,
    /// ISO 4217 currency code (default: USD, or the current terms' currency).
    #[arg(long)]
    pub currency: Option<String>,
    #[arg(long, allow_negative_numbers = true)]
    pub authorized_hours: Option<Decimal>,
    #[arg(long, allow_negative_numbers = true)]
    pub authorized_charge: Option<Decimal>,
    /// The partner must answer within this time: 30m, 12h, 7d.
    #[arg(long)]
    pub respond_within: Option<String>,
    #[arg(long)]
    pub instructions: Option<String>,
    /// How priced lines round to the currency's minor unit: half-up (default), half-even, up, down.
    #[arg(long)]
    pub rounding: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum OutsourceCmd {
    /// Lead: send the ticket to a partner with terms.
    Send {
        id: String,
        #[arg(long)]
        to: String,
        #[command(flatten)]
        terms: TermsArgs,
    },
    /// Partner: counter-offer terms while Assigned (unnamed fields keep their value).
    Counter {
        id: String,
        #[command(flatten)]
        terms: TermsArgs,
    },
    /// Lead: revise the terms while Assigned (unnamed fields keep their value).
    Revise {
        id: String,
        #[command(flatten)]
        terms: TermsArgs,
    },
    /// Partner: accept the latest terms.
    Accept {
        id: String,
        /// This instance's organization (billing account) the lead maps to.
        #[arg(long)]
        map_organization: Option<String>,
    },
    /// Partner: decline.
    Decline {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Lead: take the offer back before acceptance.
    Cancel { id: String },
    /// Partner: insource complete; the lead approves or rejects.
    Complete { id: String },
    /// Lead: approve the completed work; the link ends.
    Approve { id: String },
    /// Lead: send the completion back to the partner.
    Reject {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Lead: end the link now, from any status before Complete.
    ForceComplete { id: String },
}

#[derive(Subcommand, Debug)]
pub enum SyncCmd {
    /// Run the sync daemon (until SIGTERM or Ctrl-C; --once drains and exits).
    Run {
        #[arg(long)]
        once: bool,
    },
    /// Channel heads both ways, lag and quarantine count per partner.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// What was refused and why.
    Quarantine {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum InvoiceCmd {
    /// Every invoice issued or received.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One invoice: by number (BOLT-000001) or by ticket (ULID or number).
    Show {
        id: String,
        #[arg(long, conflicts_with = "html")]
        json: bool,
        /// A printable HTML invoice.
        #[arg(long)]
        html: bool,
        /// As it was at this log position or time (RFC 3339).
        #[arg(long, value_name = "POSITION|TIMESTAMP")]
        as_of: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ReportCmd {
    /// Per partner and ticket: hours, charges, amount, authorized vs used.
    Summary {
        #[arg(long)]
        json: bool,
    },
    /// Outsourced and received tickets by outsource status, with age.
    Status {
        #[arg(long)]
        json: bool,
    },
}

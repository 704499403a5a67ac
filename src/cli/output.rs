//! Output formats shared by the `get`, `history` and other commands.

use comfy_table::{ContentArrangement, Table, presets};
use jiff::Timestamp;
use serde::Serialize;

use crate::exit::{self, Error};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Wide,
    Yaml,
    Json,
}

pub fn to_yaml<T: Serialize>(v: &T) -> exit::Result<String> {
    serde_saphyr::to_string(v).map_err(|e| Error::new(exit::Exit::Usage, e.to_string()))
}

pub fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).expect("values serialize")
}

/// Prints a value as YAML or JSON.
pub fn print_document<T: Serialize>(format: Format, v: &T) -> exit::Result<()> {
    match format {
        Format::Json => println!("{}", to_json(v)),
        _ => print!("{}", to_yaml(v)?),
    }
    Ok(())
}

/// A plain table, like kubectl's: no borders, columns padded.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.iter().copied());
    // comfy-table pads with one space each side; trim the left edge like kubectl.
    for col in t.column_iter_mut() {
        col.set_padding((0, 3));
    }
    t
}

pub fn print_table(t: &Table) {
    for line in t.to_string().lines() {
        println!("{}", line.trim_end());
    }
}

/// `5s`, `3m`, `2h`, `4d`, as kubectl prints ages.
pub fn age(since: Option<Timestamp>) -> String {
    let Some(since) = since else {
        return "-".into();
    };
    let secs = Timestamp::now()
        .as_second()
        .saturating_sub(since.as_second())
        .max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

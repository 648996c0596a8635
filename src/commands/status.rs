//! `strongroom status [ID|URL]`: one upload's state on the server (HEAD),
//! or every unfinished upload the state file records with the offset its
//! server has now. Only entries for the --server given are asked about:
//! the credential is never sent to another server.

use std::process::ExitCode;

use strongroom::cli::StatusArgs;
use strongroom::client::state::{Entry, Store};
use strongroom::client::upload::{self, Status};
use strongroom::client::{Client, Error};

use super::EXIT_AUTH;

pub fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let client = super::connect(&args.client, 2)?;
    let runtime = super::runtime()?;
    let result = match &args.upload {
        Some(upload) => runtime.block_on(one(&client, &args, upload)),
        None => {
            let store = Store::new(super::upload::state_path(args.state.as_deref())?);
            runtime.block_on(list(&client, &args, &store))
        }
    };
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(err) if err.is_auth() => {
            eprintln!("error: authentication refused: {err}");
            Ok(ExitCode::from(EXIT_AUTH))
        }
        Err(err) => Err(err.into()),
    }
}

async fn one(client: &Client, args: &StatusArgs, upload: &str) -> Result<(), Error> {
    let url = if upload.starts_with("http://") || upload.starts_with("https://") {
        client.url(upload)?
    } else {
        client.url(&format!("files/{upload}"))?
    };
    let id = upload::id_of(url.as_str());
    let status = upload::head(client, &url).await?;
    if args.client.json {
        let line = serde_json::json!({
            "id": id,
            "url": url.as_str(),
            "offset": status.offset,
            "length": status.length,
            "disposition": status.disposition.map(|d| d.as_str()),
            "reason": status.reason,
            "expires": status.expires,
            "concat": status.concat,
        });
        println!("{line}");
        return Ok(());
    }
    println!("upload {id}: {}", describe(&status));
    Ok(())
}

fn describe(status: &Status) -> String {
    let bytes = match (status.offset, status.length) {
        (Some(offset), Some(length)) => format!("{offset} of {length} bytes"),
        (Some(offset), None) => format!("{offset} bytes, length not declared yet"),
        (None, _) => "waiting for its parts".to_owned(),
    };
    let mut text = match status.disposition {
        Some(disposition) => format!("{bytes}, complete: {}", disposition.as_str()),
        None => format!("{bytes}, in progress"),
    };
    if let Some(reason) = &status.reason {
        text += &format!(" ({reason})");
    }
    if let Some(expires) = status
        .expires
        .as_deref()
        .filter(|_| status.disposition.is_none())
    {
        text += &format!(", expires {expires}");
    }
    text
}

/// Where one recorded upload stands on its server now.
enum Found {
    Offset(u64),
    /// Expired or destroyed: the next run starts it over.
    Gone,
    /// Recorded for another server: not asked.
    Elsewhere,
}

async fn list(client: &Client, args: &StatusArgs, store: &Store) -> Result<(), Error> {
    let entries = store.entries().await?;
    if entries.is_empty() && !args.client.json && !args.client.quiet {
        println!("no unfinished uploads in {}", store.path().display());
    }
    for entry in entries {
        let found = find(client, &entry).await?;
        print_entry(&entry, &found, args);
    }
    Ok(())
}

async fn find(client: &Client, entry: &Entry) -> Result<Found, Error> {
    if entry.key.server != client.base().as_str() {
        return Ok(Found::Elsewhere);
    }
    let mut total = 0;
    for part in entry.plan.parts() {
        let url = client.url(&part.url)?;
        match upload::head(client, &url).await {
            Ok(status) => total += status.offset.unwrap_or(0),
            Err(err) if upload::is_gone(&err) => return Ok(Found::Gone),
            Err(err) => return Err(err),
        }
    }
    Ok(Found::Offset(total))
}

fn print_entry(entry: &Entry, found: &Found, args: &StatusArgs) {
    let file = entry.key.path.display();
    let size = entry.key.size;
    let url = entry
        .plan
        .result_url()
        .or(entry.plan.parts().first().map(|p| p.url.as_str()))
        .unwrap_or_default();
    if args.client.json {
        let (state, offset) = match found {
            Found::Offset(offset) => ("in_progress", Some(*offset)),
            Found::Gone => ("gone", None),
            Found::Elsewhere => ("other_server", None),
        };
        let line = serde_json::json!({
            "file": entry.key.path,
            "server": entry.key.server,
            "url": url,
            "id": upload::id_of(url),
            "size": size,
            "parts": entry.plan.parts().len(),
            "recorded_offset": entry.plan.acknowledged(),
            "server_offset": offset,
            "state": state,
        });
        println!("{line}");
        return;
    }
    let where_ = match found {
        Found::Offset(offset) => format!("{offset} of {size} bytes on the server"),
        Found::Gone => "gone from the server (expired?): the next upload starts over".into(),
        Found::Elsewhere => format!(
            "on {} (not asked; {} of {size} bytes when last recorded)",
            entry.key.server,
            entry.plan.acknowledged()
        ),
    };
    println!("{file}: {where_} ({url})");
}

//! `strongroom tenant …` and `strongroom key …`: tenants and API keys in a
//! data dir's credential store (`auth::CredentialStore`). Safe while the
//! appliance runs: the store locks and rewrites atomically, and the
//! appliance reloads it when it changes.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use strongroom::auth::{CredentialStore, KeyEntry};
use strongroom::cli::{KeyCommand, TenantCommand};

fn store(data_dir: &Path) -> anyhow::Result<CredentialStore> {
    CredentialStore::open(&data_dir.join("auth"))
        .with_context(|| format!("opening the credential store in {}", data_dir.display()))
}

pub fn run_tenant(command: TenantCommand) -> anyhow::Result<ExitCode> {
    match command {
        TenantCommand::Add { name, data_dir } => {
            store(&data_dir)?.add_tenant(&name)?;
            println!(
                "tenant {name} added; create a key with: strongroom key create --tenant {name}"
            );
        }
        TenantCommand::Remove { name, data_dir } => {
            store(&data_dir)?.remove_tenant(&name)?;
            println!(
                "tenant {name} removed and its API keys revoked; its objects and keys remain \
                 (DELETE /admin/tenants/{name} destroys them)"
            );
        }
        TenantCommand::List { data_dir, json } => {
            let listing = store(&data_dir)?.list()?;
            if json {
                println!("{}", serde_json::json!({ "tenants": listing.tenants }));
            } else {
                for tenant in listing.tenants {
                    println!("{tenant}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_key(command: KeyCommand) -> anyhow::Result<ExitCode> {
    match command {
        KeyCommand::Create {
            tenant,
            admin,
            label,
            data_dir,
            json,
        } => {
            let key = store(&data_dir)?.create_key(&tenant, admin, label)?;
            if json {
                let value = serde_json::json!({
                    "id": key.entry.id,
                    "tenant": key.entry.tenant,
                    "admin": key.entry.admin,
                    "key": key.secret,
                });
                println!("{value}");
            } else {
                println!(
                    "API key {} for tenant {tenant} (shown once; store it now):\n\n    {}\n",
                    key.entry.id, key.secret
                );
            }
        }
        KeyCommand::Revoke { id, data_dir } => {
            let key = store(&data_dir)?.revoke_key(&id)?;
            println!("API key {} of tenant {} revoked", key.id, key.tenant);
        }
        KeyCommand::List { data_dir, json } => {
            let keys = store(&data_dir)?.list()?.keys;
            if json {
                let rows: Vec<_> = keys.iter().map(key_json).collect();
                println!("{}", serde_json::json!({ "keys": rows }));
            } else {
                println!(
                    "{:<18} {:<20} {:<6} {:<8} label",
                    "id", "tenant", "admin", "state"
                );
                for key in &keys {
                    let state = if key.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "active"
                    };
                    println!(
                        "{:<18} {:<20} {:<6} {:<8} {}",
                        key.id,
                        key.tenant,
                        key.admin,
                        state,
                        key.label.as_deref().unwrap_or("")
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn key_json(key: &KeyEntry) -> serde_json::Value {
    serde_json::json!({
        "id": key.id,
        "tenant": key.tenant,
        "admin": key.admin,
        "label": key.label,
        "created_at": key.created_at,
        "revoked_at": key.revoked_at,
    })
}

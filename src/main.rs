use anyhow::Context;
use clap::Parser;

use strongroom::appliance::Appliance;
use strongroom::cli::{Cli, Command};
use strongroom::config::Config;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    strongroom::telemetry::init(cli.log_format);
    match cli.command {
        Command::Serve {
            config,
            data_dir,
            listen,
            admin_listen,
        } => {
            let mut config = match config {
                Some(path) => Config::load(&path)?,
                None => Config::default(),
            };
            if let Some(dir) = data_dir {
                config.storage.data_dir = dir;
            }
            if let Some(addr) = listen {
                config.server.listen = addr;
            }
            if let Some(addr) = admin_listen {
                config.server.admin_listen = addr;
            }
            serve(config)
        }
        Command::CheckConfig { config } => {
            let parsed = Config::load(&config)?;
            println!("{}: ok\n{parsed:#?}", config.display());
            Ok(())
        }
    }
}

fn serve(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let appliance = Appliance::start(config).await?;
        if let Some(path) = &appliance.created_key {
            println!(
                "created key-encryption key {} (mode 0600); back it up with the data dir",
                path.display()
            );
        }
        let report = &appliance.recovery;
        tracing::info!(
            public = %appliance.public_addr,
            admin = %appliance.admin_addr,
            uploads = report.uploads,
            objects = report.objects,
            truncated = report.truncated,
            orphans_removed = report.orphans_removed,
            damaged = report.damaged.len(),
            "strongroom listening"
        );
        strongroom::shutdown::signal().await;
        tracing::info!("shutting down");
        appliance.stop().await;
        Ok(())
    })
}

//! `strongroom token --scope S...`: exchanges the API key for a token with
//! those scopes and prints it (or the server's whole JSON answer), for
//! scripts that call the API themselves. The API key itself is never
//! printed.

use std::process::ExitCode;

use strongroom::cli::TokenArgs;

use super::EXIT_AUTH;

pub fn run(args: TokenArgs) -> anyhow::Result<ExitCode> {
    let client = super::connect(&args.client, 0)?;
    let runtime = super::runtime()?;
    match runtime.block_on(client.token(&args.scopes)) {
        Ok(grant) if args.client.json => {
            println!("{}", grant.document);
            Ok(ExitCode::SUCCESS)
        }
        Ok(grant) => {
            println!("{}", grant.token.expose());
            Ok(ExitCode::SUCCESS)
        }
        Err(err) if err.is_auth() => {
            eprintln!("error: authentication refused: {err}");
            Ok(ExitCode::from(EXIT_AUTH))
        }
        Err(err) => Err(err.into()),
    }
}

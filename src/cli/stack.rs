//! `sesame stack encrypt|decrypt`: seal and open one value with a stack's key through the server, as the Pulumi
//! service secrets manager would.

use std::io::{Read, Write};
use std::process::ExitCode;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::{Args, Subcommand};

use super::client::{Client, ClientArgs};
use crate::core::keys::Name;
use crate::wire::SecretText;
use crate::wire::stacks::{DecryptRequest, DecryptResponse, EncryptRequest, EncryptResponse};

/// `sesame stack …`
#[derive(Debug, Args)]
pub struct StackArgs {
    /// The stack command.
    #[command(subcommand)]
    pub command: StackCommand,
}

/// Stack commands.
#[derive(Debug, Subcommand)]
pub enum StackCommand {
    /// Encrypt a value with the stack's key; prints the ciphertext (base64) on stdout.
    #[command(
        after_help = "The value comes from the argument, or from stdin when it is omitted (read exactly, \
including any trailing newline).\n\nExample:\n  export SESAME_TOKEN=$(cat sesame-data/admin.token)\n  \
sesame stack encrypt --stack default/web/prod 'db-password'"
    )]
    Encrypt(StackValueArgs),
    /// Decrypt a ciphertext made by `stack encrypt` for the same stack; writes the plaintext to stdout exactly.
    #[command(
        after_help = "The ciphertext comes from the argument, or from stdin when it is omitted.\n\n\
Example:\n  sesame stack decrypt --stack default/web/prod \"$CIPHERTEXT\""
    )]
    Decrypt(StackValueArgs),
}

/// Flags of `stack encrypt|decrypt`.
#[derive(Debug, Args)]
pub struct StackValueArgs {
    /// The stack, as org/project/stack.
    #[arg(long, value_name = "ORG/PROJECT/STACK")]
    pub stack: String,
    /// The value (plaintext for encrypt, base64 ciphertext for decrypt); read from stdin when omitted.
    pub value: Option<String>,
    /// Server connection.
    #[command(flatten)]
    pub client: ClientArgs,
}

fn stack_path(stack: &str, op: &str) -> anyhow::Result<String> {
    let parts: Vec<&str> = stack.split('/').collect();
    let [org, project, name] = parts.as_slice() else {
        bail!("--stack must be ORG/PROJECT/STACK, got {stack:?}");
    };
    for (what, part) in [("org", org), ("project", project), ("stack", name)] {
        part.parse::<Name>()
            .with_context(|| format!("invalid {what} name {part:?}"))?;
    }
    Ok(format!("api/stacks/{org}/{project}/{name}/{op}"))
}

fn input(value: Option<String>) -> anyhow::Result<zeroize::Zeroizing<Vec<u8>>> {
    match value {
        Some(v) => Ok(zeroize::Zeroizing::new(v.into_bytes())),
        None => {
            let mut buf = zeroize::Zeroizing::new(Vec::new());
            std::io::stdin().read_to_end(&mut buf).context("reading stdin")?;
            Ok(buf)
        }
    }
}

/// Runs `sesame stack …`.
pub async fn run(args: StackArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        StackCommand::Encrypt(a) => {
            let path = stack_path(&a.stack, "encrypt")?;
            let client = Client::new(&a.client)?;
            let plaintext = input(a.value)?;
            let body = EncryptRequest {
                plaintext: SecretText::new(STANDARD.encode(&*plaintext)).into(),
            };
            let resp: EncryptResponse = client.post(&path, &body).await?;
            println!("{}", resp.ciphertext);
        }
        StackCommand::Decrypt(a) => {
            let path = stack_path(&a.stack, "decrypt")?;
            let client = Client::new(&a.client)?;
            let raw = input(a.value)?;
            let ciphertext = std::str::from_utf8(&raw).context("the ciphertext is not text")?.trim();
            let body = DecryptRequest {
                ciphertext: ciphertext.into(),
            };
            let resp: DecryptResponse = client.post(&path, &body).await?;
            let plaintext = zeroize::Zeroizing::new(
                STANDARD
                    .decode(resp.plaintext.expose())
                    .context("the server's plaintext is not base64")?,
            );
            let mut out = std::io::stdout().lock();
            out.write_all(&plaintext).context("writing stdout")?;
            out.flush().context("writing stdout")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

//! Egress NAT for the instance subnet: one nftables table of our own (`inet paas_<bridge>`),
//! written by `nft -f -` (there is no well-kept netlink nftables crate). Owns only that
//! table: must never touch the host's other tables or chains, so a host firewall keeps working.

use std::process::Stdio;

use tokio::io::AsyncWriteExt;

use super::subnet::Subnet;
use super::NetError;

/// The table holding our rules for `bridge`.
pub fn table_name(bridge: &str) -> String {
    format!("paas_{bridge}")
}

/// The whole table, replaced atomically: `nft -f` applies a script as one transaction, and
/// declaring the table before deleting it makes the delete succeed on a first run.
pub fn nat_script(bridge: &str, subnet: &Subnet) -> String {
    let table = table_name(bridge);
    format!(
        "table inet {table} {{}}\n\
         delete table inet {table}\n\
         table inet {table} {{\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tip saddr {subnet} oifname != \"{bridge}\" masquerade\n\
         \t}}\n\
         }}\n"
    )
}

pub fn delete_script(bridge: &str) -> String {
    let table = table_name(bridge);
    format!("table inet {table} {{}}\ndelete table inet {table}\n")
}

/// What running a script did.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    Yes,
    /// `nft` is not installed; the caller decides whether that matters.
    NoNft,
}

pub async fn apply(table: &str, script: &str) -> Result<Applied, NetError> {
    let err = |detail: String| NetError::Nft {
        table: table.to_string(),
        detail,
    };
    let child = tokio::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Applied::NoNft),
        Err(e) => return Err(err(format!("running nft: {e}"))),
    };
    // Dropping stdin after the write closes it: nft reads the script to EOF, then applies it.
    let written = match child.stdin.take() {
        Some(mut stdin) => stdin.write_all(script.as_bytes()).await,
        None => Err(std::io::Error::other("no stdin pipe")),
    };
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| err(format!("waiting for nft: {e}")))?;
    if !out.status.success() {
        // Its own message says more than the broken pipe a write to it may have hit.
        return Err(err(format!(
            "nft -f failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    written.map_err(|e| err(format!("writing the script to nft: {e}")))?;
    Ok(Applied::Yes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_masquerades_the_subnet_leaving_through_other_links() {
        let s = Subnet::new("10.88.0.0".parse().expect("ip"), 16).expect("subnet");
        let script = nat_script("paas0", &s);
        assert!(script.starts_with("table inet paas_paas0 {}\ndelete table inet paas_paas0\n"));
        assert!(script.contains("type nat hook postrouting priority srcnat;"));
        assert!(script.contains("ip saddr 10.88.0.0/16 oifname != \"paas0\" masquerade"));
        assert_eq!(
            delete_script("paas0"),
            "table inet paas_paas0 {}\ndelete table inet paas_paas0\n"
        );
    }
}

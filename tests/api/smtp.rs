//! The SMTP mailer against a real SMTP server on loopback (Python's
//! `aiosmtpd`, which `.ci/run` installs), storing what it receives in a
//! Maildir.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::helpers::{Backend, email, services_required, spawn_app_with};

struct SmtpServer {
    child: Child,
    port: u16,
    maildir: tempfile::TempDir,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_smtp() -> Option<SmtpServer> {
    let available = Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .status()
        .is_ok_and(|s| s.success());
    if !available {
        assert!(
            !services_required(),
            "python3 with aiosmtpd is required (pip install aiosmtpd)"
        );
        eprintln!("skipping: python3 -m aiosmtpd is not available");
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let maildir = tempfile::tempdir().unwrap();
    let mut child = Command::new("python3")
        .args([
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            &format!("127.0.0.1:{port}"),
            "-c",
            "aiosmtpd.handlers.Mailbox",
        ])
        .arg(maildir.path().join("box"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(SmtpServer {
                child,
                port,
                maildir,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("aiosmtpd did not start");
}

#[actix_web::test]
async fn verification_mail_goes_through_smtp() {
    let Some(smtp) = start_smtp() else { return };
    let port = smtp.port;
    let app = spawn_app_with(Backend::Sqlite, move |s| {
        s.mail.transport = bwenge::config::MailTransport::Smtp;
        s.mail.smtp_host = "127.0.0.1".into();
        s.mail.smtp_port = port;
        s.mail.smtp_starttls = false;
        s.mail.link_base_url = "https://app.school.example".into();
    })
    .await
    .unwrap();
    let addr = email("smtp");
    app.register("SMTP School", &addr).await;

    let new = smtp.maildir.path().join("box").join("new");
    let mut found = None;
    for _ in 0..100 {
        if let Ok(entries) = std::fs::read_dir(&new) {
            for e in entries.flatten() {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                if text.contains(&addr) {
                    found = Some(text);
                }
            }
        }
        if found.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mail = found.expect("the SMTP server received the verification mail");
    assert!(
        mail.contains("Subject: Confirm your email address"),
        "{mail}"
    );
    assert!(
        mail.contains("https://app.school.example/verify-email?token="),
        "{mail}"
    );
    // Nothing was written to the file mailer's folder.
    assert!(!app.dir.path().join("mail").exists());
}

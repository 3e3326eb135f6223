//! Outgoing mail: the `Mailer` port, an SMTP mailer (lettre, STARTTLS) for
//! production and, by default, a file mailer that writes each message as an
//! RFC 5322 file under `<data-dir>/mail/`.
//!
//! Messages are sent in the background ([`send_in_background`]) so that an
//! answer never waits on a mail server, and so that "send a reset mail" costs
//! the same time whether or not the address exists.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Body, Mailbox, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{MailSettings, MailTransport};

/// One message: plain text, and optionally the same as HTML (sent as
/// `multipart/alternative`).
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
    pub html: Option<String>,
}

#[async_trait]
pub trait Mailer: Send + Sync + 'static {
    async fn send(&self, mail: Mail) -> anyhow::Result<()>;
}

fn build_message(from: &Mailbox, mail: &Mail) -> anyhow::Result<Message> {
    let to: Mailbox = mail.to.parse().context("recipient address")?;
    let builder = Message::builder()
        .from(from.clone())
        .to(to)
        .subject(mail.subject.clone());
    let text = SinglePart::builder()
        .header(ContentType::TEXT_PLAIN)
        .body(plain_body(&mail.body));
    match &mail.html {
        None => builder.singlepart(text),
        Some(html) => builder.multipart(
            lettre::message::MultiPart::alternative()
                .singlepart(text)
                .singlepart(SinglePart::html(html.clone())),
        ),
    }
    .context("building the message")
}

/// ASCII text with CRLF line ends and lines under 998 octets is valid 7bit
/// as it stands (RFC 5322): sending it so keeps links whole, where lettre's
/// automatic choice would fold lines over 76 columns with quoted-printable.
fn plain_body(text: &str) -> Body {
    let crlf = text.replace("\r\n", "\n").replace('\n', "\r\n");
    let fits_7bit = crlf.is_ascii()
        && !crlf.contains('\0')
        && crlf
            .split("\r\n")
            .all(|line| line.len() < 998 && !line.contains('\r'));
    if fits_7bit {
        Body::dangerous_pre_encoded(crlf.into_bytes(), ContentTransferEncoding::SevenBit)
    } else {
        Body::new(text.to_owned())
    }
}

/// Writes each message to `<dir>/<time>-<id>.eml`.
pub struct FileMailer {
    dir: PathBuf,
    from: Mailbox,
}

impl FileMailer {
    pub fn new(dir: PathBuf, from: Mailbox) -> Self {
        Self { dir, from }
    }
}

#[async_trait]
impl Mailer for FileMailer {
    async fn send(&self, mail: Mail) -> anyhow::Result<()> {
        let message = build_message(&self.from, &mail)?;
        tokio::fs::create_dir_all(&self.dir)
            .await
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let name = format!(
            "{}-{}.eml",
            chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ"),
            uuid::Uuid::new_v4().simple()
        );
        let tmp = self.dir.join(format!(".{name}.tmp"));
        tokio::fs::write(&tmp, message.formatted())
            .await
            .context("writing the mail file")?;
        // Appear whole or not at all.
        tokio::fs::rename(&tmp, self.dir.join(&name))
            .await
            .context("publishing the mail file")?;
        Ok(())
    }
}

/// Sends through an SMTP server.
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl SmtpMailer {
    pub fn new(settings: &MailSettings, from: Mailbox) -> anyhow::Result<Self> {
        let host = settings.smtp_host.trim();
        anyhow::ensure!(
            !host.is_empty(),
            "mail.smtp_host (BWENGE_MAIL__SMTP_HOST) must be set when mail.transport is smtp"
        );
        let mut builder = if settings.smtp_starttls {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
                .context("setting up STARTTLS")?
        } else {
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        };
        builder = builder
            .port(settings.smtp_port)
            .timeout(Some(Duration::from_secs(settings.smtp_timeout_secs)));
        if !settings.smtp_username.is_empty() {
            builder = builder.credentials(Credentials::new(
                settings.smtp_username.clone(),
                settings.smtp_password.expose().to_owned(),
            ));
        }
        Ok(Self {
            transport: builder.build(),
            from,
        })
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, mail: Mail) -> anyhow::Result<()> {
        let message = build_message(&self.from, &mail)?;
        self.transport
            .send(message)
            .await
            .context("the SMTP server refused or did not answer")?;
        Ok(())
    }
}

/// The mailer the settings ask for.
pub fn from_settings(
    settings: &MailSettings,
    data_dir: &std::path::Path,
) -> anyhow::Result<Arc<dyn Mailer>> {
    let from: Mailbox = settings
        .from
        .parse()
        .context("mail.from is not a valid address (e.g. \"Bwenge <no-reply@school.example>\")")?;
    Ok(match settings.transport {
        MailTransport::File => Arc::new(FileMailer::new(data_dir.join("mail"), from)),
        MailTransport::Smtp => Arc::new(SmtpMailer::new(settings, from)?),
    })
}

/// Sends without making the caller wait; failures are logged.
pub fn send_in_background(mailer: Arc<dyn Mailer>, mail: Mail) {
    let span = tracing::Span::current();
    actix_web::rt::spawn(async move {
        let to = mail.to.clone();
        if let Err(e) = mailer.send(mail).await {
            let _guard = span.enter();
            tracing::error!(error = ?e, %to, "sending mail failed");
        }
    });
}

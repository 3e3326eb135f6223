//! The weekly digest mail: the week's overview, its top knowledge gaps and
//! its flags, as plain text and as HTML.

use super::model::{Flag, Gap, Overview};
use crate::mail::Mail;

#[derive(Debug, Clone)]
pub struct Digest {
    pub overview: Overview,
    pub gaps: Vec<Gap>,
    pub flags: Vec<Flag>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn rate(r: Option<f64>) -> String {
    r.map_or_else(|| "-".to_owned(), |r| format!("{:.0}%", r * 100.0))
}

impl Digest {
    pub fn mail(&self, to: &str, name: &str) -> Mail {
        let o = &self.overview.current;
        let prev = &self.overview.previous;
        let subject = format!("Your Bwenge week: {} to {}", o.from, o.to);
        let mut text = format!(
            "Hello {name},\n\nYour week on Bwenge ({} to {}):\n\n\
             Active students: {} (week before: {})\n\
             Sessions: {} (week before: {})\n\
             Questions: {} (week before: {})\n\
             Grounded answers: {} (week before: {})\n\
             Questions declined: {} (week before: {})\n",
            o.from,
            o.to,
            o.active_students,
            prev.active_students,
            o.sessions,
            prev.sessions,
            o.questions,
            prev.questions,
            rate(o.grounded_rate),
            rate(prev.grounded_rate),
            o.refusals,
            prev.refusals,
        );
        let mut html = format!(
            "<html><body><p>Hello {},</p><h2>Your week on Bwenge ({} to {})</h2>\
             <table><tr><th></th><th>This week</th><th>Week before</th></tr>\
             <tr><td>Active students</td><td>{}</td><td>{}</td></tr>\
             <tr><td>Sessions</td><td>{}</td><td>{}</td></tr>\
             <tr><td>Questions</td><td>{}</td><td>{}</td></tr>\
             <tr><td>Grounded answers</td><td>{}</td><td>{}</td></tr>\
             <tr><td>Questions declined</td><td>{}</td><td>{}</td></tr></table>",
            esc(name),
            o.from,
            o.to,
            o.active_students,
            prev.active_students,
            o.sessions,
            prev.sessions,
            o.questions,
            prev.questions,
            rate(o.grounded_rate),
            rate(prev.grounded_rate),
            o.refusals,
            prev.refusals,
        );
        text.push_str("\nWhat your material did not cover (add material on these):\n");
        html.push_str("<h3>What your material did not cover</h3><ul>");
        if self.gaps.is_empty() {
            text.push_str("  nothing this week\n");
            html.push_str("<li>nothing this week</li>");
        }
        for g in &self.gaps {
            text.push_str(&format!("  - {} ({} questions)\n", g.label, g.count));
            html.push_str(&format!(
                "<li>{} ({} questions)</li>",
                esc(&g.label),
                g.count
            ));
        }
        html.push_str("</ul>");
        text.push_str("\nQuestions refused for safety or a blocked topic:\n");
        html.push_str("<h3>Questions refused for safety or a blocked topic</h3><ul>");
        if self.flags.is_empty() {
            text.push_str("  none this week\n");
            html.push_str("<li>none this week</li>");
        }
        for f in &self.flags {
            let who = f.full_name.as_deref().unwrap_or("a former member");
            text.push_str(&format!("  - {who} ({}): {}\n", f.reason, f.text));
            html.push_str(&format!(
                "<li>{} ({}): {}</li>",
                esc(who),
                esc(&f.reason),
                esc(&f.text)
            ));
        }
        html.push_str(
            "</ul><p>You receive this because you turned on the weekly digest.</p></body></html>",
        );
        text.push_str("\nYou receive this because you turned on the weekly digest.\n");
        Mail {
            to: to.to_owned(),
            subject,
            body: text,
            html: Some(html),
        }
    }
}

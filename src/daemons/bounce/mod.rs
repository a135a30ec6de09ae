//! Replaces bounce(8) of Postfix 3.7 (services `bounce`, `defer`, `trace`).
//!
//! The per-recipient logs in `bounce/`, `defer/` and `trace/` ([`log`]),
//! and the notices built from them ([`notify`]): non-delivery, delay
//! warning, success (DSN NOTIFY=SUCCESS) and address verification reports
//! as RFC 3464 multipart/report messages, with the postmaster copies that
//! `notify_classes` asks for. Notices are submitted through cleanup
//! in-process, as Postfix's bounce daemon submits them to cleanup.
//!
//! Trusts: the queue files and logs it reads (written by mail_owner).
//! Privilege: mail_owner.
//!
//! Parameters: bounce_notice_recipient, 2bounce_notice_recipient,
//! delay_notice_recipient, error_notice_recipient, double_bounce_sender,
//! notify_classes, bounce_size_limit, bounce_template_file,
//! header_from_format, maximal_queue_lifetime, delay_warning_time,
//! enable_threaded_bounces, backwards_bounce_logfile_compatibility,
//! mail_name, myhostname, myorigin, smtputf8_enable.

pub mod log;
pub mod notify;
pub mod template;

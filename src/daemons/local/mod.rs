//! Replaces local(8) of Postfix 3.7: delivery to local users, aliases,
//! `.forward` files, `:include:` files, files and commands.
//!
//! Trust: the delivery request comes from the queue manager; alias tables,
//! `.forward` and `:include:` files are trusted only as far as Postfix
//! trusts them (ownership and permission rules below). Privilege: started
//! as root by master (unprivileged column `n`); every write into a mailbox,
//! file or maildir, and every look at a `.forward` or `:include:` file,
//! runs as the recipient (or `default_privs`) as Postfix's local(8) does
//! it: this single-threaded process switches only its effective uid/gid
//! and groups, and switches back to root right after
//! (crate::sys::privsep::EffectiveIds; a forked child when the process
//! could not be proven single-threaded). Commands run in a child process
//! that takes the user's identity for good. When not started as root
//! (non-root mode) everything runs as the invoking user.
//!
//! Parameters: alias_maps, allow_mail_to_commands, allow_mail_to_files,
//! command_expansion_filter, command_time_limit, default_privs,
//! delay_logging_resolution_limit, deliver_lock_attempts,
//! deliver_lock_delay, duplicate_filter_limit, enable_original_recipient,
//! expand_owner_alias, fallback_transport, forward_expansion_filter,
//! forward_path, frozen_delivered_to, home_mailbox, local_command_shell,
//! luser_relay, mail_spool_directory, mailbox_command(_maps),
//! mailbox_delivery_lock, mailbox_size_limit, mailbox_transport,
//! myhostname, mydestination, owner_request_special,
//! prepend_delivered_header, recipient_delimiter, reset_owner_alias,
//! stale_lock_time, strict_mailbox_ownership, export_environment,
//! command_execution_directory, queue_directory.

pub mod agent;

pub use agent::{Env, ForwardError, Forwarder, LocalAgent, LocalConfig, Pw, Resolved, SystemEnv};

-- As sqlite/0007_provider_feedback_sources.sql: feedback_events takes the relay providers'
-- sources ('ses', 'sendgrid', 'mailgun', 'postmark') beside 0006's. The constraint is replaced
-- in place (a brief lock on feedback_events while the existing rows are checked).
ALTER TABLE feedback_events DROP CONSTRAINT feedback_events_source_check;
ALTER TABLE feedback_events ADD CONSTRAINT feedback_events_source_check
    CHECK (source IN ('relay', 'dsn', 'fbl', 'mailbox', 'ses', 'sendgrid', 'mailgun',
                      'postmark'));

"""The relay providers' event webhooks, read: each provider's authentication (a signature, a
secret) checked and its events turned into :class:`~.base.ProviderEvent` values, with no store
access (:mod:`gateway.feedback.webhooks` applies them). One module a provider: :mod:`.ses`
(through :mod:`.sns`), :mod:`.sendgrid`, :mod:`.mailgun`, :mod:`.postmark`; what they share in
:mod:`.base`; the HTTPS fetcher SNS needs in :mod:`.fetch`."""

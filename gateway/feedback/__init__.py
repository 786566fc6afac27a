"""The feedback loop's use cases: reports (DSNs, ARF and JMRP complaints) read, attributed to a
recipient and recorded through :class:`gateway.consents.Consents` (:mod:`.intake`); the
operator's mail files read in bounded pieces (:mod:`.mailboxes`)."""

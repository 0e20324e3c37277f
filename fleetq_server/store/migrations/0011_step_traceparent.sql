-- OpenTelemetry: the W3C traceparent of the submit that created the step, so that each
-- execution attempt's span can link to the submit's trace. NULL when tracing is off.
ALTER TABLE fleetq_steps ADD COLUMN traceparent text;

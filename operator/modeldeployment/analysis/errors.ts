// What a failed call means for a person reading a check result: the reason (denied by policy, too
// large, no answer in time, refused) and the endpoint's origin, never its path, query or answer. The
// outbound client words its own errors; anything else is a bug or a local failure, named by class.
import { OutboundError } from '../../runtime/outbound.js';

const selfWorded = new Set(['ResponseJudgeError', 'QueryError']);

export function requestError(err: unknown, label: string): string {
  if (err instanceof OutboundError) return err.message;
  // The response judge and the Prometheus client word their own errors too, and carry no answer text.
  if (selfWorded.has((err as Error)?.name)) return (err as Error).message;
  const e = err as Error;
  return `${label}: ${e?.name ?? 'Error'}: ${(e?.message ?? String(err)).slice(0, 200)}`;
}

/** A bounded description of an answer's size, for messages that may not show the answer. */
export function answerSize(body: Buffer): string {
  return body.length === 0 ? 'empty answer' : body.length < 1024 ? `${body.length}-byte answer` : `${(body.length / 1024).toFixed(1)} KiB answer`;
}

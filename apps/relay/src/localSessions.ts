/**
 * This node's agent sessions, by id and by label. The label map is the fast path for requests
 * whose agent is connected here; the bus registry answers for the rest.
 */
import type { AgentSession } from './agentSession';

export class LocalSessions {
  readonly byId = new Map<string, AgentSession>();
  readonly byLabel = new Map<string, AgentSession>();

  add(session: AgentSession): void {
    this.byId.set(session.id, session);
  }

  bindLabel(label: string, session: AgentSession): void {
    this.byLabel.set(label, session);
  }

  /** Stops routing new requests to a session (it was replaced) while it finishes its streams. */
  unbindLabels(session: AgentSession): void {
    for (const label of session.labels) {
      if (this.byLabel.get(label) === session) this.byLabel.delete(label);
    }
  }

  /** Forgets a session; labels are dropped only where this session still holds them. */
  remove(session: AgentSession): void {
    this.byId.delete(session.id);
    for (const label of session.labels) {
      if (this.byLabel.get(label) === session) this.byLabel.delete(label);
    }
  }
}

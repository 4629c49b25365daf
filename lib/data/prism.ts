/**
 * PRISM (HannahRoseKirk/prism-alignment) to preference pairs, with the release's
 * rules (docs/method.md §6): users with no conversation in the file are dropped; a turn
 * qualifies when it has a user message, a chosen reply and at least one rejected
 * reply; a conversation is dropped only if no turn qualifies; users with fewer than
 * 6 remaining conversations are dropped; each qualifying turn pairs its chosen reply
 * with each rejected one, in a context of the earlier qualifying turns (first user
 * message + first chosen reply) and this turn's user message.
 */
import { FormatError } from "../errors.ts";
import type { Message, PairStats, RawPair } from "./pairs.ts";

/** Minimum conversations a user must keep (the release's threshold). */
export const MIN_CONVERSATIONS = 6;

interface HistoryItem {
  turn: number;
  role: string;
  content: string;
  if_chosen?: boolean;
}

/** Parses JSON lines, naming the file and line of a bad one. */
export function parseJsonLines(file: string, text: string): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  text.split("\n").forEach((line, i) => {
    if (!line.trim()) return;
    try {
      out.push(JSON.parse(line));
    } catch (e) {
      throw new FormatError(file, `line ${i + 1} is not valid JSON (${(e as Error).message})`);
    }
  });
  return out;
}

/** The pairs of one conversation, or none when no turn qualifies. */
export function conversationPairs(
  user: string,
  conversationId: string,
  history: HistoryItem[],
): { pairs: RawPair[]; turns: number; qualifying: number } {
  const byTurn = new Map<number, HistoryItem[]>();
  for (const h of history) {
    if (!byTurn.has(h.turn)) byTurn.set(h.turn, []);
    byTurn.get(h.turn)!.push(h);
  }
  const context: Message[] = [];
  const pairs: RawPair[] = [];
  let qualifying = 0;
  for (const turn of [...byTurn.keys()].sort((a, b) => a - b)) {
    const items = byTurn.get(turn)!;
    const userMsg = items.find((h) => h.role === "user");
    const replies = items.filter((h) => h.role === "model");
    const chosen = replies.find((h) => h.if_chosen === true);
    const rejected = replies.filter((h) => h.if_chosen === false);
    if (!userMsg || !chosen || rejected.length === 0) continue;
    qualifying++;
    const prompt: Message[] = [...context, { role: "user", content: userMsg.content }];
    for (const r of rejected) pairs.push({ user, conversationId, prompt, chosen: chosen.content, rejected: r.content });
    context.push({ role: "user", content: userMsg.content }, { role: "assistant", content: chosen.content });
  }
  return { pairs, turns: byTurn.size, qualifying };
}

/** Builds PRISM pairs from the survey and conversations files' contents. */
export function prismPairs(
  survey: { file: string; text: string },
  conversations: { file: string; text: string },
): { pairs: RawPair[]; stats: PairStats } {
  const surveyRows = parseJsonLines(survey.file, survey.text);
  const surveyUsers = new Set(surveyRows.map((r) => String(r.user_id)));
  const convs = parseJsonLines(conversations.file, conversations.text);
  const byUser = new Map<string, RawPair[][]>();
  let convsWithPairs = 0, turnsSeen = 0, turnsQualifying = 0, emptyReplies = 0;
  convs.forEach((c, i) => {
    if (c.user_id === undefined || !Array.isArray(c.conversation_history)) {
      throw new FormatError(conversations.file, `line ${i + 1}: expected user_id and a conversation_history list`);
    }
    const user = String(c.user_id);
    if (!byUser.has(user)) byUser.set(user, []);
    const r = conversationPairs(user, String(c.conversation_id), c.conversation_history as HistoryItem[]);
    turnsSeen += r.turns;
    turnsQualifying += r.qualifying;
    if (r.pairs.length) {
      convsWithPairs++;
      byUser.get(user)!.push(r.pairs);
    }
  });
  const pairs: RawPair[] = [];
  let users = 0, conversationsKept = 0;
  const usersWithConversations = [...byUser.keys()].filter((u) => surveyUsers.size === 0 || surveyUsers.has(u));
  for (const user of usersWithConversations) {
    const kept = byUser.get(user)!;
    if (kept.length < MIN_CONVERSATIONS) continue;
    users++;
    conversationsKept += kept.length;
    for (const conv of kept) {
      for (const p of conv) {
        if (p.chosen === "EMPTY STRING" || p.rejected === "EMPTY STRING") emptyReplies++;
        pairs.push(p);
      }
    }
  }
  return {
    pairs,
    stats: {
      users,
      conversations: conversationsKept,
      pairs: pairs.length,
      survey_users: surveyUsers.size,
      users_with_conversations: usersWithConversations.length,
      conversations_in_file: convs.length,
      conversations_with_a_qualifying_turn: convsWithPairs,
      turns: turnsSeen,
      qualifying_turns: turnsQualifying,
      pairs_with_empty_reply: emptyReplies,
    },
  };
}

// What a restore selection means: which tables and which kinds of change it applies. Pure: no
// I/O, no database.
import { changeKinds, type ChangeKind, type RestoreSelection } from './types';

/** The selection restores this table (without --tables, every one). */
export function isSelected(sel: RestoreSelection, table: string): boolean {
  return !sel.tables || sel.tables.includes(table);
}

/** The tenant is to become exactly the backup: replace, every kind of change, no row skipped. */
export function isExactReplace(sel: RestoreSelection): boolean {
  return sel.mode === 'replace' && appliedKinds(sel).size === 3 && sel.missingRefs === 'refuse';
}

/** The kinds of change the mode and selection allow. */
export function appliedKinds(sel: RestoreSelection): Set<ChangeKind> {
  const allowed: ChangeKind[] = sel.mode === 'missing-only' ? ['insert'] : [...changeKinds];
  return new Set(allowed.filter((k) => !sel.changes || sel.changes.includes(k)));
}

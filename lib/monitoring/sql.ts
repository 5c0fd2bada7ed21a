// SQL pieces the health model's queries share.

/** A timestamptz as ISO-8601 text in UTC with its microseconds (a JavaScript Date would drop them). */
export const microsText = (column: string) => `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

<?php
// Reads `count` sessions back and compares each with rc_session_data(id, gen, size), exactly.
// The session is closed normally (session_write_close: unchanged data means a touch with
// lazy_write), as a PHP page that only reads its session would.
// Args: prefix=, count=, start=0, gen=1, size=4096.
// Summary: {ok, missing: [id], mismatches: [{id, reason}], errors, maxMs, slowestId, warnings}.
declare(strict_types=1);
require __DIR__ . '/common.php';

/** Why $got differs from $want, or null when they are identical. */
function rc_diff(array $want, array $got): ?string
{
    if ($got === $want) {
        return null;
    }
    foreach ($want as $k => $v) {
        if (!array_key_exists($k, $got)) {
            return "field $k missing";
        }
        if ($got[$k] !== $v) {
            return is_string($v) && is_string($got[$k])
                ? sprintf('field %s differs (%d bytes, want %d)', $k, strlen($got[$k]), strlen($v))
                : sprintf('field %s is %s, want %s', $k, var_export($got[$k], true), var_export($v, true));
        }
    }
    $extra = array_keys(array_diff_key($got, $want));
    return $extra === [] ? 'same fields in another order' : 'unexpected fields: ' . implode(',', $extra);
}

$args = rc_args();
$gen = rc_int($args, 'gen', 1);
$size = rc_int($args, 'size', 4096);
$ok = 0;
$missing = [];
$mismatches = [];
$errors = [];
$maxMs = 0.0;
$slowestId = null;

foreach (rc_ids(rc_str($args, 'prefix'), rc_int($args, 'start', 0), rc_int($args, 'count')) as $id) {
    $t0 = hrtime(true);
    session_id($id);
    if (!session_start()) {
        $errors[] = "$id: session_start failed";
        continue;
    }
    $got = $_SESSION;
    if (!session_write_close()) {
        $errors[] = "$id: session_write_close failed";
    }
    $ms = rc_ms($t0);
    if ($ms > $maxMs) {
        [$maxMs, $slowestId] = [$ms, $id];
    }
    if ($got === []) {
        $missing[] = $id;
        continue;
    }
    $reason = rc_diff(rc_session_data($id, $gen, $size), $got);
    if ($reason !== null) {
        $mismatches[] = ['id' => $id, 'reason' => $reason];
        continue;
    }
    $ok++;
}

rc_finish([
    'ok' => $ok, 'missing' => $missing, 'mismatches' => $mismatches, 'errors' => $errors,
    'maxMs' => $maxMs, 'slowestId' => $slowestId,
]);

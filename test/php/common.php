<?php
// Shared by the session scripts: arguments, error capture, payloads, the JSON summary.
// Every script prints exactly one JSON object as the last line of stdout. Anything PHP
// complains about (warning, notice, deprecation, uncaught exception, fatal error) ends up
// in that summary's "warnings" list, so a test can assert that PHP stayed silent.
declare(strict_types=1);

error_reporting(E_ALL);

/** @var list<string> $rcWarnings */
$rcWarnings = [];
$rcSummaryPrinted = false;

set_error_handler(static function (int $no, string $message, string $file, int $line) use (&$rcWarnings): bool {
    $rcWarnings[] = sprintf('%s: %s (%s:%d)', rc_error_name($no), $message, basename($file), $line);
    return true; // handled: keep PHP from also printing it
});

set_exception_handler(static function (Throwable $e) use (&$rcWarnings): void {
    $rcWarnings[] = sprintf('uncaught %s: %s (%s:%d)', get_class($e), $e->getMessage(), basename($e->getFile()), $e->getLine());
    rc_finish(['fatal' => true], 2);
});

// Fatal errors bypass set_error_handler; report them in the summary all the same.
register_shutdown_function(static function () use (&$rcWarnings, &$rcSummaryPrinted): void {
    $last = error_get_last();
    if ($rcSummaryPrinted || $last === null) {
        return;
    }
    if (($last['type'] & (E_ERROR | E_PARSE | E_CORE_ERROR | E_COMPILE_ERROR | E_USER_ERROR)) !== 0) {
        $rcWarnings[] = sprintf('%s: %s (%s:%d)', rc_error_name($last['type']), $last['message'], basename($last['file']), $last['line']);
        rc_finish(['fatal' => true], 2);
    }
});

function rc_error_name(int $no): string
{
    return match ($no) {
        E_ERROR => 'E_ERROR', E_WARNING => 'E_WARNING', E_PARSE => 'E_PARSE', E_NOTICE => 'E_NOTICE',
        E_CORE_ERROR => 'E_CORE_ERROR', E_CORE_WARNING => 'E_CORE_WARNING',
        E_COMPILE_ERROR => 'E_COMPILE_ERROR', E_COMPILE_WARNING => 'E_COMPILE_WARNING',
        E_USER_ERROR => 'E_USER_ERROR', E_USER_WARNING => 'E_USER_WARNING', E_USER_NOTICE => 'E_USER_NOTICE',
        E_STRICT => 'E_STRICT', E_RECOVERABLE_ERROR => 'E_RECOVERABLE_ERROR',
        E_DEPRECATED => 'E_DEPRECATED', E_USER_DEPRECATED => 'E_USER_DEPRECATED',
        default => "E_($no)",
    };
}

/**
 * Arguments come as key=value words after the script name.
 * @return array<string, string>
 */
function rc_args(): array
{
    $args = [];
    foreach (array_slice($_SERVER['argv'], 1) as $word) {
        $eq = strpos($word, '=');
        if ($eq === false) {
            throw new InvalidArgumentException("argument without '=': $word");
        }
        $args[substr($word, 0, $eq)] = substr($word, $eq + 1);
    }
    return $args;
}

/** @param array<string, string> $args */
function rc_int(array $args, string $name, ?int $default = null): int
{
    if (!isset($args[$name])) {
        if ($default === null) {
            throw new InvalidArgumentException("missing argument: $name");
        }
        return $default;
    }
    if (preg_match('/^[0-9]+$/', $args[$name]) !== 1) {
        throw new InvalidArgumentException("argument $name is not a non-negative integer: {$args[$name]}");
    }
    return (int) $args[$name];
}

/** @param array<string, string> $args */
function rc_str(array $args, string $name): string
{
    if (!isset($args[$name])) {
        throw new InvalidArgumentException("missing argument: $name");
    }
    return $args[$name];
}

/** The session ids of a run: prefix followed by a zero-padded index. @return list<string> */
function rc_ids(string $prefix, int $start, int $count): array
{
    $ids = [];
    for ($i = $start; $i < $start + $count; $i++) {
        $ids[] = sprintf('%s%06d', $prefix, $i);
    }
    return $ids;
}

/**
 * The payload a session of this id and generation holds: $size bytes derived from both,
 * raw binary (NUL, CR, LF included) so values are never mistaken for protocol lines.
 */
function rc_payload(string $id, int $gen, int $size): string
{
    $out = '';
    for ($i = 0; strlen($out) < $size; $i++) {
        $out .= hash('sha256', "$id:$gen:$i", true);
    }
    return substr($out, 0, $size);
}

/** The whole $_SESSION a write stores, so a read can compare it exactly. @return array<string, mixed> */
function rc_session_data(string $id, int $gen, int $size): array
{
    return ['rc_id' => $id, 'rc_gen' => $gen, 'rc_payload' => rc_payload($id, $gen, $size), 'counter' => 0];
}

/** Milliseconds since $t0 (hrtime nanoseconds). */
function rc_ms(int $t0): float
{
    return (hrtime(true) - $t0) / 1e6;
}

/** Print the one-line JSON summary (with the warnings collected) and exit. */
function rc_finish(array $summary, int $exitCode = 0): never
{
    global $rcWarnings, $rcSummaryPrinted;
    $rcSummaryPrinted = true;
    $summary['warnings'] = $rcWarnings;
    echo "\n", json_encode($summary, JSON_THROW_ON_ERROR | JSON_INVALID_UTF8_SUBSTITUTE), "\n";
    exit($exitCode);
}

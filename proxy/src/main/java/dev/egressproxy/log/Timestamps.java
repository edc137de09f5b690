package dev.egressproxy.log;

import java.time.LocalDateTime;
import java.time.ZoneOffset;

/**
 * The access log's {@code ts}: a millisecond instant as ISO 8601 in UTC, exactly as
 * {@link java.time.Instant#toString()} writes it ({@code 2026-11-28T07:30:30.775Z}, and without the
 * fraction on a whole second), without its cost. The date and time of day change once a second, so
 * each thread keeps the text of the last second it wrote and adds only the milliseconds; the JSON
 * access-log line spent about half its time in {@code Instant.toString()} before.
 */
final class Timestamps {

    /** One thread's last second and its {@code yyyy-MM-ddTHH:mm:ss} text. */
    private static final class LastSecond {
        long second = Long.MIN_VALUE;
        String text;
    }

    private static final ThreadLocal<LastSecond> LAST = ThreadLocal.withInitial(LastSecond::new);

    private Timestamps() {
    }

    static String iso(long epochMillis) {
        long second = Math.floorDiv(epochMillis, 1000);
        int millis = (int) Math.floorMod(epochMillis, 1000);
        LastSecond last = LAST.get();
        if (last.second != second) {
            LocalDateTime t = LocalDateTime.ofEpochSecond(second, 0, ZoneOffset.UTC);
            if (t.getYear() < 1000 || t.getYear() > 9999) {
                // Outside four-digit years Instant writes signs and padding; leave those to it.
                return java.time.Instant.ofEpochMilli(epochMillis).toString();
            }
            last.text = t.toString().length() == 16 ? t + ":00" : t.toString();
            last.second = second;
        }
        if (millis == 0) {
            return last.text + 'Z';
        }
        char[] out = new char[last.text.length() + 5];
        last.text.getChars(0, last.text.length(), out, 0);
        int i = last.text.length();
        out[i] = '.';
        out[i + 1] = (char) ('0' + millis / 100);
        out[i + 2] = (char) ('0' + millis / 10 % 10);
        out[i + 3] = (char) ('0' + millis % 10);
        out[i + 4] = 'Z';
        return new String(out);
    }
}

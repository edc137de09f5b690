package dev.egressproxy.testing;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.PooledByteBufAllocator;
import io.netty.buffer.UnpooledByteBufAllocator;
import io.netty.util.ResourceLeakDetector;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.extension.AfterAllCallback;
import org.junit.jupiter.api.extension.BeforeAllCallback;
import org.junit.jupiter.api.extension.ExtensionContext;

/**
 * Fails a test class when Netty's leak detector (run at PARANOID by the build) reported a buffer
 * that was garbage-collected without being released. Netty reports leaks only when it tracks a new
 * buffer after the leaked one was collected, so after the class this collects garbage and
 * allocates a few tracked buffers to flush pending reports. Registered for every test class
 * through the service loader (junit-platform.properties turns auto-detection on).
 */
public final class LeakCheckExtension implements BeforeAllCallback, AfterAllCallback {

    @Override
    public void beforeAll(ExtensionContext context) {
        if (ResourceLeakDetector.getLevel() != ResourceLeakDetector.Level.PARANOID) {
            throw new IllegalStateException("tests must run with -Dio.netty.leakDetection.level=paranoid, found "
                    + ResourceLeakDetector.getLevel());
        }
    }

    @Override
    public void afterAll(ExtensionContext context) {
        for (int round = 0; round < 3; round++) {
            System.gc();
            System.runFinalization();
            for (int i = 0; i < 64; i++) {
                PooledByteBufAllocator.DEFAULT.directBuffer(16).release();
                PooledByteBufAllocator.DEFAULT.heapBuffer(16).release();
                ByteBuf b = UnpooledByteBufAllocator.DEFAULT.directBuffer(16);
                b.release();
            }
        }
        if (!LeakRecorder.LEAKS.isEmpty()) {
            List<String> leaks = new ArrayList<>(LeakRecorder.LEAKS);
            LeakRecorder.LEAKS.clear();
            throw new AssertionError("Netty reported " + leaks.size() + " buffer leak(s) in "
                    + context.getDisplayName() + ":\n" + String.join("\n---\n", leaks));
        }
    }
}

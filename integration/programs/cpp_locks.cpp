/*
 * cpp_locks: C++'s std::mutex and std::condition_variable, waited on.
 *
 * Claim under test: the block profile sees C++ waits with their C++ callers: wait_for_lock
 * waits on a std::mutex that holder keeps for HOLD_MS at a time (label `lock`), and
 * wait_for_signal waits on a std::condition_variable that a signaller notifies every
 * SIGNAL_MS (label `condvar`). Prints "ready" once its threads run.
 *
 * Usage: cpp_locks
 */
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>

namespace {

constexpr auto HOLD = std::chrono::milliseconds(3);
constexpr auto SIGNAL_EVERY = std::chrono::milliseconds(5);

std::mutex lock;
std::mutex queue_lock;
std::condition_variable queue_changed;
unsigned long queued;

__attribute__((noinline)) void wait_for_lock()
{
    std::lock_guard<std::mutex> held(lock);
    asm volatile("" ::: "memory");
}

__attribute__((noinline)) void wait_for_signal()
{
    std::unique_lock<std::mutex> held(queue_lock);
    queue_changed.wait(held, [] { return queued > 0; });
    queued--;
}

} // namespace

int main()
{
    std::thread holder([] {
        for (;;) {
            {
                std::lock_guard<std::mutex> held(lock);
                std::this_thread::sleep_for(HOLD);
            }
            std::this_thread::sleep_for(std::chrono::microseconds(100));
        }
    });
    std::thread locker([] {
        for (;;) {
            wait_for_lock();
            std::this_thread::sleep_for(std::chrono::microseconds(50));
        }
    });
    std::thread consumer([] {
        for (;;)
            wait_for_signal();
    });
    std::thread signaller([] {
        for (;;) {
            std::this_thread::sleep_for(SIGNAL_EVERY);
            {
                std::lock_guard<std::mutex> held(queue_lock);
                queued++;
            }
            queue_changed.notify_one();
        }
    });
    std::printf("ready\n");
    std::fflush(stdout);
    holder.join();
}

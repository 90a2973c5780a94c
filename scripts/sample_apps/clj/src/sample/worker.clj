(ns sample.worker
  "The sample's job runner (Procfile `worker:`): takes one job at a time from
  the jobs table with FOR UPDATE SKIP LOCKED, so two colours running during a
  hand-over never take the same job; on SIGTERM it stops taking and finishes
  the job in hand."
  (:require [sample.db :as db]))

(def ^:private running (atom true))

(defn- take-one
  "Do one job; false when there was none."
  [conn colour]
  (.setAutoCommit conn false)
  (try
    (let [id (with-open [st (.prepareStatement
                             conn (str "SELECT id FROM jobs WHERE done_by IS NULL ORDER BY id "
                                       "LIMIT 1 FOR UPDATE SKIP LOCKED"))
                         rs (.executeQuery st)]
               (when (.next rs) (.getLong rs 1)))]
      (when id
        (with-open [up (.prepareStatement
                        conn "UPDATE jobs SET done_by = ?, done_count = done_count + 1 WHERE id = ?")]
          (.setString up 1 colour)
          (.setLong up 2 id)
          (.executeUpdate up)))
      (.commit conn)
      (boolean id))
    (catch Exception e
      (.rollback conn)
      (throw e))))

(defn -main [& _]
  (let [colour (or (System/getenv "BLUEGREEN_COLOUR") "?")
        finished (promise)]
    (.addShutdownHook (Runtime/getRuntime)
                      (Thread. (fn [] (reset! running false) (deref finished 20000 nil))))
    (println "worker" colour "taking jobs")
    (with-open [conn (db/connect)]
      (while @running
        (when-not (take-one conn colour)
          (Thread/sleep 200))))
    (println "worker" colour "stopped")
    (deliver finished true)))
